"""The fused Triton kernels against cuDNN + Inductor, on every distinct MBConv block shape of EfficientNet-B0 (224 px)
and GPUNet-0 (320 px), fp16, channels_last (issue 19):

    PYTHONPATH=. python benchmarks/kernels_bench.py --batch-size 256 1 --json kernels.json

For each block it times each op of the fused forward and the whole block:
- expand:    1x1 conv + bias + activation           (Triton GEMM vs cuDNN conv + Inductor elementwise)
- depthwise: k x k depthwise + bias + act [+ SE mean] (Triton vs cuDNN + Inductor's fused act/mean)
- project:   [SE scale] 1x1 conv + bias [+ residual]  (Triton GEMM with prologue/epilogue vs Inductor + cuDNN)
- block:     the fused block (ops above + the SE MLP in torch) vs the BN-folded block, both torch.compile'd (the
             custom ops stay opaque calls; Inductor fuses the torch parts around them, as in the fast path).
The reference side is `image_classification.kernels.reference` (or the folded block) under torch.compile
(default mode, static shapes): cuDNN convolutions with Inductor's generated elementwise kernels around them. Both
sides are captured in a CUDA graph of several back-to-back calls and timed by events over the graph's replays
(median), so launch gaps count as they do inside a captured network. "bytes" is what must move at least: each
input read once, the output written once, the weights read once (fp16); GB/s is that over the time, and the
fraction is of the device-to-device copy bandwidth measured in the same run. At batch 1 the tensors fit in L2, so
GB/s there can exceed the HBM copy rate. Every row also checks the Triton output against the reference's.

`--sweep` also times a few tile configurations of each kernel at batch 256 on a handful of shapes (for the tile
heuristics). `--ops` limits which rows run.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_classification.inference.fast import fold_batchnorm  # noqa: E402
from image_classification.inference.fused_model import fused_block  # noqa: E402
from image_classification.kernels import reference  # noqa: E402
from image_classification.kernels.fused_blocks import FusedInvertedResidual  # noqa: E402
from image_classification.models import create_model  # noqa: E402

MODELS = (("efficientnet-b0", 224), ("gpunet-0", 320))
OPS = ("expand", "depthwise", "project", "block")
TOLERANCE = 2e-2  # fp16 relative error (norm) between the Triton and the reference output
OPS_NS = torch.ops.image_classification
# The blocks whose tile configurations --sweep times: large and small maps, k3 and k5, narrow and wide.
SWEEP_BLOCKS = ("layers.1.block0", "layers.4.block1", "layers.5.block1", "blocks.8", "blocks.11")


def randomise_batchnorm(model: torch.nn.Module) -> None:
    """Random BN statistics, so folding gives real weights and biases (never time on zeros)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) - 0.5)


def distinct_blocks() -> list[dict]:
    """Each distinct fusable block of the two models: its folded module and its input shape (C, H, W)."""
    out, seen = [], {}
    for name, size in MODELS:
        model = create_model(name).eval()
        randomise_batchnorm(model)
        folded = fold_batchnorm(model)
        shapes = {}

        def record(key, shapes=shapes):
            def hook(module, inputs):
                shapes.setdefault(key, tuple(inputs[0].shape[1:]))
            return hook

        hooks = [m.register_forward_pre_hook(record(key)) for key, m in folded.named_modules()
                 if fused_block(m) is not None]
        with torch.no_grad():
            folded(torch.randn(1, 3, size, size))
        for h in hooks:
            h.remove()
        for key, shape in shapes.items():
            block = folded.get_submodule(key)
            # Blocks that differ only in their training-time drop-path rate are the same inference workload.
            signature = (name, shape, repr(fused_block(block)), tuple(t.shape for t in block.state_dict().values()))
            if signature in seen:
                seen[signature]["names"].append(key)
                continue
            entry = {"model": name, "names": [key], "shape": shape, "block": block}
            seen[signature] = entry
            out.append(entry)
    return out


def time_graph(fn, calls: int, replays: int) -> float:
    """Median milliseconds per call of `fn()`, from replays of a CUDA graph of `calls` back-to-back calls."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    del graph
    return statistics.median(times)


def copy_bandwidth() -> float:
    """Device-to-device copy, GB/s counting bytes read plus bytes written."""
    src = torch.randn(2**29, device="cuda", dtype=torch.float16)  # 1 GiB
    dst = torch.empty_like(src)
    for _ in range(50):  # the clocks idle low until the GPU has been busy a while
        dst.copy_(src)
    ms = time_graph(lambda: dst.copy_(src), calls=5, replays=10)
    return 2 * 2**30 / (ms * 1e-3) / 1e9


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


def nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def op_cases(fused, block, x: torch.Tensor) -> list[dict]:
    """(name, triton fn, reference fn, bytes) for each op of the fused block on input x, plus the block itself."""
    cases = []
    with torch.inference_mode():
        if isinstance(fused, FusedInvertedResidual):
            h = x
            if fused.expand_weight is not None:
                args = (x, fused.expand_weight, fused.expand_bias, None, None, fused.expand_act)
                h = OPS_NS.pointwise_conv(*args)
                cases.append(dict(op="expand", args=args, triton=OPS_NS.pointwise_conv, ref=reference.pointwise_conv,
                                  bytes=nbytes(x, h, fused.expand_weight, fused.expand_bias),
                                  detail=f"{x.shape[1]}->{h.shape[1]} {fused.expand_act}"))
            args = (h, fused.dw_taps, fused.dw_bias, fused.kernel_size, fused.stride, fused.padding, fused.dw_act,
                    fused.se is not None)
            d, mean = OPS_NS.depthwise_conv(*args)
            cases.append(dict(op="depthwise", args=args, triton=OPS_NS.depthwise_conv, ref=reference.depthwise_conv,
                              bytes=nbytes(h, d, fused.dw_taps, fused.dw_bias),
                              detail=f"k{fused.kernel_size} s{fused.stride} {h.shape[1]}ch {h.shape[2]}->{d.shape[2]}"
                                     f"px {fused.dw_act}{' +mean' if fused.se is not None else ''}"))
            gate = fused.se(mean) if fused.se is not None else None
            res = x if fused.residual else None
        else:
            d = torch.relu(fused.conv(x)) if fused.act == "relu" else torch.nn.functional.silu(fused.conv(x))
            gate = fused.se(d.float().mean((2, 3))) if fused.se is not None else None
            res = x if fused.residual else None
        args = (d, fused.proj_weight, fused.proj_bias, gate, res, "none")
        out = OPS_NS.pointwise_conv(*args)
        cases.append(dict(op="project", args=args, triton=OPS_NS.pointwise_conv, ref=reference.pointwise_conv,
                          bytes=nbytes(d, out, res, fused.proj_weight, fused.proj_bias, gate),
                          detail=f"{d.shape[1]}->{out.shape[1]}{' scale' if gate is not None else ''}"
                                 f"{' +res' if res is not None else ''}"))
        weights = [p for p in fused.buffers()] + [p for p in fused.parameters()]
        cases.append(dict(op="block", args=(x,), triton=fused, ref=block, bytes=nbytes(x, out, *weights),
                          detail=type(fused).__name__.removeprefix("Fused")))
    return cases


def first(out):
    return out[0] if isinstance(out, tuple) else out


def run_case(case: dict, calls: int, replays: int) -> dict:
    args = case["args"]
    compiled = torch.compile(case["ref"], dynamic=False)
    mine = torch.compile(case["triton"], dynamic=False) if case["op"] == "block" else case["triton"]
    with torch.inference_mode():
        expected = first(compiled(*args))
        got = first(mine(*args))
        err = rel_error(got, expected)
        ref_ms = time_graph(lambda: compiled(*args), calls, replays)
        tri_ms = time_graph(lambda: mine(*args), calls, replays)
    return dict(ref_ms=ref_ms, triton_ms=tri_ms, rel_err=err)


DW_SWEEP = [dict(BLOCK_P=p, BLOCK_C=c, num_warps=w) for p, c, w in
            ((64, 64, 4), (32, 64, 4), (16, 128, 4), (32, 128, 4), (128, 32, 4), (64, 64, 8), (128, 64, 8))]
PW_SWEEP = [dict(BLOCK_M=m, BLOCK_N=n, BLOCK_K=k, num_warps=w, num_stages=s) for m, n, k, w, s in
            ((128, None, 64, 4, 3), (128, None, 64, 8, 3), (64, None, 64, 4, 3), (128, None, 32, 4, 4),
             (256, None, 64, 8, 3), (128, 64, 64, 4, 3), (64, 64, 32, 4, 4))]


def sweep(case: dict, calls: int, replays: int) -> list[dict]:
    from image_classification.kernels import depthwise_conv_kernel, pointwise_conv_kernel

    out = []
    args = case["args"]
    with torch.inference_mode():
        if case["op"] == "depthwise":
            configs, fn = DW_SWEEP, depthwise_conv_kernel.depthwise_conv
        else:
            nout = args[1].shape[0]
            default_n = min(128, max(16, 1 << (nout - 1).bit_length()))
            configs = [{**c, "BLOCK_N": c["BLOCK_N"] or default_n} for c in PW_SWEEP]
            fn = pointwise_conv_kernel.pointwise_conv
        expected = first(case["ref"](*args))
        for config in configs:
            try:
                got = first(fn(*args, config=config))
                err = rel_error(got, expected)
                ms = time_graph(lambda c=config: fn(*args, config=c), calls, replays)
            except Exception as exc:  # a config that does not compile (shared memory, registers) is data too
                out.append(dict(config=config, error=str(exc).splitlines()[0][:200]))
                continue
            out.append(dict(config=config, ms=ms, rel_err=err, gbps=case["bytes"] / ms / 1e6))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, nargs="+", default=[256, 1])
    p.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    p.add_argument("--sweep", action="store_true", help="also time tile configurations at the largest batch")
    p.add_argument("--json", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: the kernel benchmark needs a CUDA device", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 100000)
    bandwidth = copy_bandwidth()
    device = torch.cuda.get_device_name()
    print(f"{device}, torch {torch.__version__}, copy bandwidth {bandwidth:.0f} GB/s", flush=True)
    blocks = distinct_blocks()
    rows, sweeps = [], []
    start = time.time()
    for batch in args.batch_size:
        calls, replays = (20, 20) if batch <= 8 else (5, 10)
        for entry in blocks:
            block = copy.deepcopy(entry["block"]).cuda().half().to(memory_format=torch.channels_last)
            fused = fused_block(block)
            x = channels_last(torch.randn(batch, *entry["shape"], device="cuda", dtype=torch.float16))
            for case in op_cases(fused, block, x):
                if case["op"] not in args.ops:
                    continue
                row = dict(model=entry["model"], block=",".join(entry["names"]), op=case["op"], batch=batch,
                           input=list(entry["shape"]), detail=case["detail"], bytes=case["bytes"])
                try:
                    row.update(run_case(case, calls, replays))
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                    print(f"  {row['model']} {row['block']} {row['op']} batch {batch}: {row['error']}", flush=True)
                    rows.append(row)
                    continue
                row["speedup"] = row["ref_ms"] / row["triton_ms"]
                row["triton_gbps"] = row["bytes"] / row["triton_ms"] / 1e6
                row["ref_gbps"] = row["bytes"] / row["ref_ms"] / 1e6
                row["triton_frac_copy_bw"] = row["triton_gbps"] / bandwidth
                row["ok"] = row["rel_err"] < TOLERANCE
                rows.append(row)
                print(format_row(row), flush=True)
                if args.json:
                    write_json(args.json, device, bandwidth, rows, sweeps)
                if (args.sweep and batch == max(args.batch_size) and case["op"] in ("depthwise", "project")
                        and entry["names"][0] in SWEEP_BLOCKS):
                    sweeps.append(dict(model=entry["model"], block=row["block"], op=case["op"], batch=batch,
                                       detail=case["detail"], default_ms=row["triton_ms"],
                                       results=sweep(case, calls, replays)))
                    best = min((r for r in sweeps[-1]["results"] if "ms" in r), key=lambda r: r["ms"], default=None)
                    if best:
                        print(f"    sweep best {best['ms']:.4f} ms {best['config']}", flush=True)
            del block, fused, x
            torch.cuda.empty_cache()
    print(f"\n{device}, torch {torch.__version__}, copy bandwidth {bandwidth:.0f} GB/s, "
          f"{time.time() - start:.0f} s")
    print(HEADER)
    for row in rows:
        print(format_row(row))
    summary = summarise(rows)
    print(summary)
    bad = [r for r in rows if "error" in r or not r.get("ok", False)]
    if args.json:
        write_json(args.json, device, bandwidth, rows, sweeps)
    if bad:
        print(f"{len(bad)} row(s) failed or disagree with the reference beyond {TOLERANCE}", file=sys.stderr)
    return 1 if bad else 0


def write_json(path: str, device: str, bandwidth: float, rows: list, sweeps: list) -> None:
    """Rewritten after every row, so a run stopped at its time limit keeps what it measured."""
    Path(path).write_text(json.dumps(dict(
        meta=dict(device=device, torch=torch.__version__, copy_gbps=bandwidth, command=" ".join(sys.argv),
                  date=time.strftime("%Y-%m-%d %H:%M:%S"), tolerance=TOLERANCE),
        rows=rows, sweeps=sweeps), indent=1))


HEADER = (f"{'model':16s} {'block':22s} {'op':9s} {'batch':>5s} {'detail':34s} {'ref ms':>8s} {'triton ms':>9s} "
          f"{'speedup':>7s} {'GB/s':>6s} {'of copy':>7s} {'rel err':>8s}")


def format_row(r: dict) -> str:
    head = f"{r['model']:16s} {r['block'][:22]:22s} {r['op']:9s} {r['batch']:5d} {r['detail'][:34]:34s}"
    if "error" in r:
        return f"{head} ERROR {r['error']}"
    return (f"{head} {r['ref_ms']:8.4f} {r['triton_ms']:9.4f} {r['speedup']:6.2f}x {r['triton_gbps']:6.0f} "
            f"{r['triton_frac_copy_bw']:7.0%} {r['rel_err']:8.1e}")


def summarise(rows: list[dict]) -> str:
    """Per model, op and batch: total reference and Triton time over the distinct blocks, and the ratio."""
    totals: dict[tuple, list[float]] = {}
    for r in rows:
        if "error" in r:
            continue
        key = (r["model"], r["op"], r["batch"])
        t = totals.setdefault(key, [0.0, 0.0])
        t[0] += r["ref_ms"]
        t[1] += r["triton_ms"]
    lines = ["", "sum over distinct blocks (each counted once):",
             f"{'model':16s} {'op':9s} {'batch':>5s} {'ref ms':>8s} {'triton ms':>9s} {'speedup':>7s}"]
    for (model, op, batch), (ref, tri) in sorted(totals.items()):
        lines.append(f"{model:16s} {op:9s} {batch:5d} {ref:8.3f} {tri:9.3f} {ref / tri:6.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
