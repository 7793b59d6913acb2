"""Time any registered model's forward pass in chosen modes, optionally beside timm's and torchvision's versions:

    python -m image_classification.benchmark --model efficientnet-b0 --batch-size 1 256 \\
        --modes eager channels_last folded graph compile compile-graph --peers timm torchvision --json out.json
    python -m image_classification.benchmark --model efficientnet-b0 gpunet-0 --modes fast fast-frozen \\
        --peers timm plain --peer-modes tuned      # ours against peers given the same tricks, with the ratio

Modes build on each other the way a deployment would, all with weights in --precision: `eager` (the model as
trained), `channels_last`, `graph` (channels_last, replayed as one CUDA graph: the plain graph-captured forward),
`folded` (BatchNorm folded into the convolutions), `folded-graph`, `compile` (folded + torch.compile),
`compile-graph` (folded + compiled + CUDA graph), `fast` (the fast path that classify.py, launch.py's
evaluate/benchmark_inference and Triton run: compile-graph with `fast_compile_options`), `fast-frozen` and
`fast-frozen-mm` (the fast path with Inductor's freezing at every batch size, without and with 1x1 convolutions as
matmuls: the fast path itself gives those only to batches <= 8), `fast-triton` (the fast path with the MBConv
blocks on this project's fused Triton kernels), `onnxruntime`, `tensorrt` (when installed) and
`aoti` (an AOTInductor package). Each is warmed up, then timed as the median of many CUDA-event (or wall-clock, on
the CPU) measurements of one call (graph modes include copying the input into the captured buffer); peak GPU memory
is recorded.

Peers are timm's and torchvision's EfficientNets and `plain`, this project's own model as it comes (the unfolded
module: GPUNet has no timm or torchvision version). They run eager, channels_last, graph, compile, compile-graph and
`tuned`: the peer given the same tricks as the fast path by hand (frozen with Inductor's `freezing`, which folds
BatchNorm at compile time, plus the fast path's options at that batch size, compiled, replayed as a CUDA graph). When
both ran, a closing "ratio" section compares each of our fast modes with the best tuned peer per model and batch.

Every row also records the bytes that must move per image (each convolution's and linear layer's input and output
once in the row's precision, the weights once per batch: inference/roofline.py) and, given a copy bandwidth
(`--copy-bandwidth-gbs`; on a GPU measured at start by a large device-to-device copy), the memory floor and the
fraction of it reached: "floor 158k img/s at 4.3 TB/s; measured 26%".
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from common.cli_errors import ArgumentParser, UserError, non_negative_int, positive_float, positive_int, run_cli

# The fast path with fixed options at every batch size, to measure per batch size whether they beat the fast path's
# rule (runtime/compile_options.py: freezing and 1x1-as-matmul for batches <= SMALL_BATCH, freezing above).
FROZEN_FAST_OPTIONS = {"fast-frozen": {"freezing": True}, "fast-frozen-mm": {"freezing": True, "conv_1x1_as_mm": True}}
FAST_MODES = ("fast", "fast-triton", *FROZEN_FAST_OPTIONS)
MODES = ("eager", "channels_last", "graph", "folded", "folded-graph", "compile", "compile-graph", *FAST_MODES,
         "onnxruntime", "tensorrt", "aoti")
PEER_MODES = ("eager", "channels_last", "graph", "compile", "compile-graph", "tuned")
# timm's and torchvision's names for the same architectures (GPUNet has no peer there).
PEERS = {
    "timm": {f"efficientnet-b{i}": f"efficientnet_b{i}" for i in range(8)},
    "torchvision": {f"efficientnet-b{i}": f"efficientnet_b{i}" for i in range(8)},
}
# `plain` is this project's own network as it comes, a peer for every model.
PEER_SOURCES = (*PEERS, "plain")


@dataclass
class Timing:
    source: str
    model: str
    mode: str
    batch_size: int
    image_size: int
    precision: str
    median_ms: float
    p90_ms: float
    images_per_s: float
    peak_memory_gib: float | None
    setup_s: float
    note: str = ""
    profile: dict | None = None
    bytes_per_image: float | None = None
    floor_images_per_s: float | None = None
    floor_fraction: float | None = None


def peer_label(source: str, model: str) -> str | None:
    """The peer's name for this project's `model` (None: that source has no such network)."""
    return model if source == "plain" else PEERS[source].get(model)


def _dtype(precision: str) -> torch.dtype:
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]


def _time(fn, x: torch.Tensor, warmup: int, iters: int) -> list[float]:
    """Per-call milliseconds: CUDA events on a GPU (no host sync inside the timed region), wall clock on CPU."""
    for _ in range(warmup):
        fn(x)
    if x.is_cuda:
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        for s, e in zip(starts, ends):
            s.record()
            fn(x)
            e.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def kernel_kind(name: str) -> str:
    n = name.lower()
    if n.startswith("triton") or "triton_" in n:
        return "triton (fused elementwise/reductions)"
    if any(k in n for k in ("conv", "cudnn", "xmma", "implicit", "dgrad", "fprop", "depthwise")):
        return "convolution (cuDNN)"
    if any(k in n for k in ("gemm", "cutlass", "cublas", "sm90", "sm80", "gemv", "splitk")):
        return "matmul (cuBLAS)"
    return "other"


def profile_replay(graph, replays: int = 20) -> dict:
    """Kernels per forward and GPU time by kernel kind, from replaying a captured CUDA graph under the profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize()
    kinds: dict[str, list[float]] = {}
    count = 0
    for evt in profiler.events():
        if evt.device_type == torch.autograd.DeviceType.CUDA:
            count += 1
            entry = kinds.setdefault(kernel_kind(evt.name), [0, 0.0])
            entry[0] += 1
            entry[1] += evt.device_time / 1e3
    return {"kernels_per_forward": count / replays,
            "by_kind": {k: {"kernels": c / replays, "ms": round(t / replays, 4)} for k, (c, t) in kinds.items()}}


def _plain(model: nn.Module, device, precision: str, channels_last: bool):
    model = model.eval().to(device, dtype=_dtype(precision))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run(x):
        return model(x)

    return run


def _graphed(fn, x: torch.Tensor):
    """Capture fn on a static input; replays copy new input into it (as a server would)."""
    static_in = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_in)

    def run(inp):
        static_in.copy_(inp)
        graph.replay()
        return static_out

    run._graph = graph  # so a profiler can replay the graph alone
    return run


def build_runner(model: nn.Module, mode: str, *, device, precision: str, example: torch.Tensor, compile_mode: str,
                 workdir: Path):
    """A callable for one mode of this project's model."""
    from image_classification.inference.fast import fast_predictor, prepare_for_inference

    cuda = device.type == "cuda"
    if mode.endswith("graph") or mode in FAST_MODES:
        if not cuda:
            raise UserError(f"mode {mode} needs a GPU")
    if mode in ("eager", "channels_last", "graph"):
        return peer_runner(model, mode, device=device, precision=precision, example=example, compile_mode=compile_mode)
    if mode in ("fast", "fast-triton"):
        return fast_predictor(model, device=device, precision=precision, batch_size=example.shape[0],
                              image_size=example.shape[-1], log=None,
                              kernels="triton" if mode == "fast-triton" else "inductor")
    if mode in FROZEN_FAST_OPTIONS:
        return prepare_for_inference(
            model, device=device, precision=precision, channels_last=True, fold_bn=True, compile="default",
            compile_options=FROZEN_FAST_OPTIONS[mode], cuda_graph=True, batch_size=example.shape[0],
            image_size=example.shape[-1])
    if mode in ("folded", "folded-graph", "compile", "compile-graph"):
        return prepare_for_inference(
            model, device=device, precision=precision, channels_last=True, fold_bn=True,
            compile=compile_mode if mode.startswith("compile") else None,
            cuda_graph=mode.endswith("graph"), batch_size=example.shape[0], image_size=example.shape[-1],
        )
    if mode == "onnxruntime":
        from image_classification.export.onnx import export_onnx

        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install onnxruntime") from None
        path = export_onnx(model.float().cpu(), workdir / "model.onnx", image_size=example.shape[-1])
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        session = ort.InferenceSession(str(path), providers=providers)
        name = session.get_inputs()[0].name

        def run(x):
            return session.run(None, {name: x.float().cpu().numpy()})[0]

        run.note = f"provider {session.get_providers()[0]}"
        return run
    if mode == "tensorrt":
        from image_classification.export.onnx import export_onnx
        from image_classification.export.tensorrt import TensorRTRunner, build_engine

        onnx_path = export_onnx(model.float().cpu(), workdir / "model.onnx", image_size=example.shape[-1])
        engine = build_engine(onnx_path, workdir / "model.plan", fp16=precision == "fp16", image_size=example.shape[-1],
                              min_batch=1, opt_batch=example.shape[0], max_batch=max(example.shape[0], 1))
        return TensorRTRunner(engine)
    if mode == "aoti":
        from image_classification.export.aoti import export_aoti, load_aoti

        path = export_aoti(model, workdir / "model.pt2", image_size=example.shape[-1], device=device.type,
                           precision=precision, max_batch=max(example.shape[0], 2))
        package = load_aoti(path, device=device.type)

        def run(x):
            return package(x.to(_dtype(precision)).contiguous(memory_format=torch.channels_last))

        return run
    raise UserError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")


def _peer_model(source: str, name: str) -> nn.Module:
    if source == "plain":
        from image_classification.models import create_model

        return create_model(name)
    if source == "timm":
        import timm

        return timm.create_model(PEERS["timm"][name], pretrained=False)
    import torchvision

    return getattr(torchvision.models, PEERS["torchvision"][name])(weights=None)


def tuned_compile_options(batch_size: int) -> dict:
    """A peer's Inductor options in mode `tuned`: freezing (constant weights, BatchNorm folded into the convolutions
    while compiling) plus whatever the fast path adds at this batch size."""
    from image_classification.runtime.compile_options import fast_compile_options

    return {"freezing": True, **fast_compile_options(batch_size)}


def peer_runner(model: nn.Module, mode: str, *, device, precision: str, example: torch.Tensor,
                compile_mode: str = "default"):
    """A model as it comes (timm's, torchvision's, or ours unfolded): eager, channels_last, graph-captured, compiled,
    or tuned (frozen, compiled with the fast path's options and graph-captured: see `tuned_compile_options`)."""
    if (mode.endswith("graph") or mode == "tuned") and device.type != "cuda":
        raise UserError(f"mode {mode} needs a GPU")
    if mode == "eager":
        return _plain(model, device, precision, channels_last=False)
    if mode in ("channels_last", "graph"):
        run = _plain(model, device, precision, channels_last=True)
        return _graphed(run, example) if mode == "graph" else run
    if mode in ("compile", "compile-graph"):
        from image_classification.runtime.compile_options import configure_compile_cache

        configure_compile_cache()
        compiled = torch.compile(model.eval().to(device, dtype=_dtype(precision)).to(
            memory_format=torch.channels_last), mode=compile_mode)
        run = torch.inference_mode()(compiled)
        return _graphed(run, example) if mode == "compile-graph" else run
    if mode == "tuned":
        from image_classification.runtime.compile_options import compile_with_options, configure_compile_cache

        configure_compile_cache()
        model = model.eval().to(device, dtype=_dtype(precision)).to(memory_format=torch.channels_last)
        for p in model.parameters():
            p.requires_grad_(False)
        compiled = compile_with_options(model, "default", tuned_compile_options(example.shape[0]))
        return _graphed(torch.inference_mode()(compiled), example)
    raise UserError(f"peers are timed in {', '.join(PEER_MODES)}, not {mode}")


def measure(source: str, model_name: str, mode: str, make_runner, *, batch_size: int, image_size: int,
            precision: str, device: torch.device, warmup: int, iters: int, profile_graphs: bool = False) -> Timing:
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).to(_dtype(precision))
    if mode != "eager":
        x = x.contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    # Each configuration compiles from scratch. Dynamo counts recompilations per code object, and every block of a
    # family shares one forward: without a reset, a process's ninth configuration hits the recompile limit and runs
    # eager without a word (on the H200, GPUNet-0 fast-frozen at batch 1 after seven others: 0.351 ms for 0.22).
    torch._dynamo.reset()
    t0 = time.perf_counter()
    runner = make_runner(x)
    runner(x)  # compilation and capture happen on first use: count them as setup, not as run time
    if device.type == "cuda":
        torch.cuda.synchronize()
    setup = time.perf_counter() - t0
    times = sorted(_time(runner, x, warmup, iters))
    median = statistics.median(times)
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    graph = getattr(runner, "_graph", None)
    profile = profile_replay(graph) if profile_graphs and graph is not None else None
    return Timing(source, model_name, mode, batch_size, image_size, precision, round(median, 4), round(p90, 4),
                  round(batch_size / median * 1e3, 1), round(peak, 3) if peak is not None else None,
                  round(setup, 2), getattr(runner, "note", ""), profile)


def add_roofline(row: Timing, traffic, bandwidth_gbs: float | None) -> None:
    """Fill the row's memory-floor fields from its network's `Traffic` (and the copy bandwidth, when known)."""
    from image_classification.inference.roofline import floor_images_per_s

    row.bytes_per_image = round(traffic.bytes_per_image(row.precision, row.batch_size))
    if bandwidth_gbs:
        floor = floor_images_per_s(row.bytes_per_image, bandwidth_gbs)
        row.floor_images_per_s = round(floor, 1)
        row.floor_fraction = round(row.images_per_s / floor, 4)


def format_table(rows: list[Timing], bandwidth_gbs: float | None = None) -> str:
    from image_classification.inference.roofline import roofline_text

    head = f"{'source':12s} {'model':22s} {'mode':14s} {'batch':>5s} {'res':>4s} {'prec':4s} " \
           f"{'median ms':>10s} {'p90 ms':>9s} {'img/s':>10s} {'peak GiB':>8s} {'setup s':>7s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        peak = f"{r.peak_memory_gib:8.2f}" if r.peak_memory_gib is not None else f"{'-':>8s}"
        roofline = ""
        if bandwidth_gbs and r.bytes_per_image:
            floor = roofline_text(r.images_per_s, r.bytes_per_image, bandwidth_gbs)
            roofline = f"  {r.bytes_per_image / 1e6:.3g} MB/img: {floor}"
        lines.append(f"{r.source:12s} {r.model:22s} {r.mode:14s} {r.batch_size:5d} {r.image_size:4d} "
                     f"{r.precision:4s} {r.median_ms:10.3f} {r.p90_ms:9.3f} {r.images_per_s:10.1f} {peak} "
                     f"{r.setup_s:7.1f}" + roofline + (f"  {r.note}" if r.note else ""))
    return "\n".join(lines)


def peer_ratios(rows: list[Timing], models: list[str]) -> list[dict]:
    """Each of our fast-mode rows against the fastest `tuned` peer of the same network, batch, resolution and
    precision: ratio = our images/s over the peer's (above 1: ours is faster)."""
    out = []
    for name in models:
        for r in rows:
            if r.source != "ours" or r.model != name or r.mode not in FAST_MODES:
                continue
            same = (r.batch_size, r.image_size, r.precision)
            peers = [q for q in rows if q.source != "ours" and q.mode == "tuned"
                     and q.model == peer_label(q.source, name) and (q.batch_size, q.image_size, q.precision) == same]
            if not peers:
                continue
            best = max(peers, key=lambda q: q.images_per_s)
            out.append({"model": name, "batch_size": r.batch_size, "image_size": r.image_size,
                        "precision": r.precision, "ours_mode": r.mode, "ours_images_per_s": r.images_per_s,
                        "ours_median_ms": r.median_ms, "peer": f"{best.source} {best.model}",
                        "peer_images_per_s": best.images_per_s, "peer_median_ms": best.median_ms,
                        "ratio": round(r.images_per_s / best.images_per_s, 3)})
    return out


def format_ratios(ratios: list[dict]) -> str:
    lines = ["ratio: ours / the best tuned peer, images/s at the same batch size (above 1: ours is faster)"]
    for q in ratios:
        lines.append(f"{q['model']:18s} batch {q['batch_size']:4d}  ours {q['ours_mode']:14s} "
                     f"{q['ours_images_per_s']:10.1f} img/s ({q['ours_median_ms']:.3f} ms)  {q['peer']:26s} "
                     f"{q['peer_images_per_s']:10.1f} img/s ({q['peer_median_ms']:.3f} ms)  {q['ratio']:.2f}x")
    return "\n".join(lines)


def main(argv=None):
    p = ArgumentParser(prog="python -m image_classification.benchmark", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", nargs="+", default=["efficientnet-b0"], help="registered model name(s)")
    p.add_argument("--batch-size", "-b", type=positive_int, nargs="+", default=[1, 256])
    p.add_argument("--image-size", type=positive_int, default=None, help="resolution (default: each model's)")
    p.add_argument("--modes", nargs="+", default=["eager", "graph", "fast"], choices=MODES)
    p.add_argument("--precision", default=None, choices=("fp16", "bf16", "fp32"),
                   help="default: fp16 on a GPU, fp32 on the CPU")
    p.add_argument("--peers", nargs="*", default=[], choices=PEER_SOURCES,
                   help="also time timm's, torchvision's and/or (plain) this project's unfolded model")
    p.add_argument("--peer-modes", nargs="+", default=["eager", "graph", "compile-graph"], choices=PEER_MODES)
    p.add_argument("--compile-mode", default="default", help="torch.compile mode for the compile modes")
    p.add_argument("--warmup", type=non_negative_int, default=20)
    p.add_argument("--iters", type=positive_int, default=None, help="timed calls (default: 200 at batch 1, 50 above)")
    p.add_argument("--cpu", action="store_true", help="benchmark on the CPU")
    p.add_argument("--profile", action="store_true",
                   help="for graph modes: kernels per forward and GPU time by kernel kind (printed and in the JSON)")
    p.add_argument("--copy-bandwidth-gbs", type=positive_float, default=None, metavar="GB/S",
                   help="memory bandwidth for each row's floor (default: measured by a device-to-device copy on a "
                        "GPU; none on the CPU)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)

    from image_classification.inference.roofline import copy_bandwidth_gbs, layer_traffic
    from image_classification.models import create_model, get_model_info

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    precision = args.precision or ("fp16" if device.type == "cuda" else "fp32")
    if device.type == "cpu" and precision == "fp16":
        raise UserError("fp16 inference needs a GPU; use --precision fp32 or bf16 on the CPU")
    torch.backends.cudnn.benchmark = True
    models = [get_model_info(name).name for name in args.model]  # a misspelt name fails before any measuring
    bandwidth, bandwidth_source = args.copy_bandwidth_gbs, "given"
    if bandwidth is None and device.type == "cuda":
        bandwidth, bandwidth_source = round(copy_bandwidth_gbs(device), 1), "measured (1 GiB device-to-device copy)"
    rows: list[Timing] = []
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "device": torch.cuda.get_device_name(device)
            if device.type == "cuda" else "cpu", "torch": torch.__version__, "command": " ".join(sys.argv),
            "copy_bandwidth_gbs": bandwidth, "copy_bandwidth": bandwidth_source if bandwidth else None}
    if bandwidth:
        print(f"copy bandwidth {bandwidth:.1f} GB/s, {bandwidth_source}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        failed: list[str] = []
        for name in models:
            info = get_model_info(name)
            size = args.image_size or info.input_size
            traffic = layer_traffic(create_model(name), size)
            for bs in args.batch_size:
                timing_args = dict(batch_size=bs, image_size=size, precision=precision, device=device,
                                   warmup=args.warmup, iters=args.iters or (200 if bs == 1 else 50),
                                   profile_graphs=args.profile)
                jobs = [("ours", name, mode, lambda x, m=mode, n=name: build_runner(
                    create_model(n), m, device=device, precision=precision, example=x,
                    compile_mode=args.compile_mode, workdir=Path(tmp))) for mode in args.modes]
                jobs += [(source, peer_label(source, name), mode, lambda x, s=source, m=mode, n=name: peer_runner(
                    _peer_model(s, n), m, device=device, precision=precision, example=x,
                    compile_mode=args.compile_mode))
                    for source in args.peers if peer_label(source, name) for mode in args.peer_modes]
                for source, label, mode, make in jobs:
                    try:
                        row = measure(source, label, mode, make, **timing_args)
                    except UserError as exc:
                        print(f"skipped {source} {label} {mode} batch {bs}: {exc}", file=sys.stderr, flush=True)
                        continue
                    except Exception as exc:  # noqa: BLE001
                        # One mode that breaks (a compiler error, memory) must not cost the rows after it; the run
                        # still ends non-zero below.
                        failed.append(f"{source} {label} {mode} batch {bs}")
                        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        print(f"failed {failed[-1]}: {type(exc).__name__}: {first_line[:300]}", file=sys.stderr,
                              flush=True)
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                        continue
                    add_roofline(row, traffic, bandwidth)
                    rows.append(row)
                    print(format_table([row], bandwidth).splitlines()[-1], flush=True)
                    if row.profile:
                        print(f"    profile: {json.dumps(row.profile)}", flush=True)
                    _write_json(args.json, meta, rows, [])  # after every row: a run cut short keeps what it measured
    ratios = peer_ratios(rows, models)
    print()
    print(f"{meta['device']}, torch {meta['torch']}, {meta['date']}")
    print(format_table(rows, bandwidth))
    if ratios:
        print()
        print(format_ratios(ratios))
    _write_json(args.json, meta, rows, ratios)
    if failed:
        raise UserError(f"{len(failed)} configuration(s) failed: {'; '.join(failed)}")


def _write_json(path: str | None, meta: dict, rows: list[Timing], ratios: list[dict]) -> None:
    if path:
        from common.atomic_files import atomic_write

        with atomic_write(path, "w") as f:
            json.dump({"meta": meta, "results": [asdict(r) for r in rows], "ratios": ratios}, f, indent=1)


if __name__ == "__main__":
    run_cli(main)
