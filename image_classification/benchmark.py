"""Time any registered model's forward pass in chosen modes, optionally beside timm's and torchvision's versions:

    python -m image_classification.benchmark --model efficientnet-b0 --batch-size 1 256 \\
        --modes eager channels_last folded graph compile compile-graph --peers timm torchvision --json out.json

Modes build on each other the way a deployment would, all with weights in --precision: `eager` (the model as
trained), `channels_last`, `graph` (channels_last, replayed as one CUDA graph: the plain graph-captured forward),
`folded` (BatchNorm folded into the convolutions), `folded-graph`, `compile` (folded + torch.compile),
`compile-graph` (folded + compiled + CUDA graph), `fast` (the fast path that classify.py, launch.py's
evaluate/benchmark_inference and Triton run: compile-graph with `fast_compile_options`), `onnxruntime`, `tensorrt`
(when installed) and `aoti` (an AOTInductor package). Each is warmed up, then timed as the median of many CUDA-event
(or wall-clock, on the CPU) measurements of one call (graph modes include copying the input into the captured
buffer); peak GPU memory is recorded. Peers (timm, torchvision) run eager, channels_last, graph, compile and
compile-graph (no BN folding: that is this project's).
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

from common.cli_errors import ArgumentParser, UserError, non_negative_int, positive_int, run_cli

MODES = ("eager", "channels_last", "graph", "folded", "folded-graph", "compile", "compile-graph", "fast",
         "onnxruntime", "tensorrt", "aoti")
PEER_MODES = ("eager", "channels_last", "graph", "compile", "compile-graph")
# timm's and torchvision's names for the same architectures (GPUNet has no peer there).
PEERS = {
    "timm": {f"efficientnet-b{i}": f"efficientnet_b{i}" for i in range(8)},
    "torchvision": {f"efficientnet-b{i}": f"efficientnet_b{i}" for i in range(8)},
}


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

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize()
    kinds: dict[str, list[float]] = {}
    count = 0
    for evt in prof.events():
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
    if mode.endswith("graph") or mode == "fast":
        if not cuda:
            raise UserError(f"mode {mode} needs a GPU")
    if mode in ("eager", "channels_last", "graph"):
        return peer_runner(model, mode, device=device, precision=precision, example=example, compile_mode=compile_mode)
    if mode == "fast":
        return fast_predictor(model, device=device, precision=precision, batch_size=example.shape[0],
                              image_size=example.shape[-1], log=None)
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
    if source == "timm":
        import timm

        return timm.create_model(PEERS["timm"][name], pretrained=False)
    import torchvision

    return getattr(torchvision.models, PEERS["torchvision"][name])(weights=None)


def peer_runner(model: nn.Module, mode: str, *, device, precision: str, example: torch.Tensor,
                compile_mode: str = "default"):
    """A model as it comes (timm's, torchvision's, or ours unfolded): eager, channels_last, graph-captured, compiled."""
    if mode.endswith("graph") and device.type != "cuda":
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
    raise UserError(f"peers are timed in {', '.join(PEER_MODES)}, not {mode}")


def measure(source: str, model_name: str, mode: str, make_runner, *, batch_size: int, image_size: int,
            precision: str, device: torch.device, warmup: int, iters: int, profile_graphs: bool = False) -> Timing:
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).to(_dtype(precision))
    if mode != "eager":
        x = x.contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
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


def format_table(rows: list[Timing]) -> str:
    head = f"{'source':12s} {'model':22s} {'mode':14s} {'batch':>5s} {'res':>4s} {'prec':4s} " \
           f"{'median ms':>10s} {'p90 ms':>9s} {'img/s':>10s} {'peak GiB':>8s} {'setup s':>7s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        peak = f"{r.peak_memory_gib:8.2f}" if r.peak_memory_gib is not None else f"{'-':>8s}"
        lines.append(f"{r.source:12s} {r.model:22s} {r.mode:14s} {r.batch_size:5d} {r.image_size:4d} "
                     f"{r.precision:4s} {r.median_ms:10.3f} {r.p90_ms:9.3f} {r.images_per_s:10.1f} {peak} "
                     f"{r.setup_s:7.1f}" + (f"  {r.note}" if r.note else ""))
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
    p.add_argument("--peers", nargs="*", default=[], choices=tuple(PEERS), help="also time timm/torchvision")
    p.add_argument("--peer-modes", nargs="+", default=["eager", "graph", "compile-graph"], choices=PEER_MODES)
    p.add_argument("--compile-mode", default="default", help="torch.compile mode for the compile modes")
    p.add_argument("--warmup", type=non_negative_int, default=20)
    p.add_argument("--iters", type=positive_int, default=None, help="timed calls (default: 200 at batch 1, 50 above)")
    p.add_argument("--cpu", action="store_true", help="benchmark on the CPU")
    p.add_argument("--profile", action="store_true",
                   help="for graph modes: kernels per forward and GPU time by kernel kind (printed and in the JSON)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)

    from image_classification.models import create_model, get_model_info

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    precision = args.precision or ("fp16" if device.type == "cuda" else "fp32")
    if device.type == "cpu" and precision == "fp16":
        raise UserError("fp16 inference needs a GPU; use --precision fp32 or bf16 on the CPU")
    torch.backends.cudnn.benchmark = True
    rows: list[Timing] = []
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "device": torch.cuda.get_device_name(device)
            if device.type == "cuda" else "cpu", "torch": torch.__version__, "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.model:
            info = get_model_info(name)
            size = args.image_size or info.input_size
            for bs in args.batch_size:
                common = dict(batch_size=bs, image_size=size, precision=precision, device=device,
                              warmup=args.warmup, iters=args.iters or (200 if bs == 1 else 50),
                              profile_graphs=args.profile)
                jobs = [("ours", info.name, mode, lambda x, m=mode, n=info.name: build_runner(
                    create_model(n), m, device=device, precision=precision, example=x,
                    compile_mode=args.compile_mode, workdir=Path(tmp))) for mode in args.modes]
                jobs += [(source, PEERS[source][info.name], mode, lambda x, s=source, m=mode, n=info.name: peer_runner(
                    _peer_model(s, n), m, device=device, precision=precision, example=x,
                    compile_mode=args.compile_mode))
                    for source in args.peers if info.name in PEERS[source] for mode in args.peer_modes]
                for source, label, mode, make in jobs:
                    try:
                        rows.append(measure(source, label, mode, make, **common))
                    except UserError as exc:
                        print(f"skipped {source} {label} {mode} batch {bs}: {exc}", file=sys.stderr, flush=True)
                        continue
                    print(format_table(rows[-1:]).splitlines()[-1], flush=True)
                    if rows[-1].profile:
                        print(f"    profile: {json.dumps(rows[-1].profile)}", flush=True)
    print()
    print(f"{meta['device']}, torch {meta['torch']}, {meta['date']}")
    print(format_table(rows))
    if args.json:
        from common.atomic_files import atomic_write

        with atomic_write(args.json, "w") as f:
            json.dump({"meta": meta, "results": [asdict(r) for r in rows]}, f, indent=1)


if __name__ == "__main__":
    run_cli(main)
