"""Which TorchInductor settings make the fast path fastest: times one model at one batch size under several
compile configurations (all BN-folded, fp16, channels_last, replayed as a CUDA graph), beside the plain
graph-captured forward and timm's. This is the experiment behind `runtime/compile_options.FAST_COMPILE_OPTIONS`.

    python benchmarks/explore_inductor.py --model gpunet-0 --batch-size 1 --configs default freezing ... --json F
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback

import torch

from image_classification.benchmark import PEERS, _graphed, _plain, _time, profile_replay
from image_classification.inference.fast import prepare_for_inference
from image_classification.models import create_model, get_model_info

CONFIGS = {
    "default": ("default", {}),
    "freezing": ("default", {"freezing": True}),
    "freezing-1x1mm": ("default", {"freezing": True, "conv_1x1_as_mm": True}),
    "1x1mm": ("default", {"conv_1x1_as_mm": True}),
    "freezing-1x1mm-aggressive": ("default", {"freezing": True, "conv_1x1_as_mm": True, "aggressive_fusion": True}),
    # Autotune only the GEMMs (1x1 convolutions): Triton templates can fuse bias, activation and residual epilogues.
    "autotune-gemm": ("default", {"freezing": True, "conv_1x1_as_mm": True, "max_autotune_gemm": True,
                                  "max_autotune_gemm_backends": "ATEN,TRITON"}),
    "autotune": ("max-autotune-no-cudagraphs", {"freezing": True}),
    "autotune-1x1mm": ("max-autotune-no-cudagraphs", {"freezing": True, "conv_1x1_as_mm": True}),
    "autotune-1x1mm-cd": ("max-autotune-no-cudagraphs", {"freezing": True, "conv_1x1_as_mm": True,
                                                        "coordinate_descent_tuning": True}),
}


class CudnnConvReLU(torch.nn.Module):
    """conv + bias + ReLU as one cuDNN call (cudnnConvolutionBiasActivationForward), on BN-folded weights."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        c = self.conv
        return torch.cudnn_convolution_relu(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)


def fuse_conv_relu(model):
    """On a BN-folded GPUNet: every conv whose BN became Identity and whose activation is ReLU -> CudnnConvReLU."""
    from image_classification.models import gpunet

    pairs = {gpunet.Stem: [("conv", "bn", "act")], gpunet.Head: [("conv", "bn", "act")],
             gpunet.LargeStem: [(f"conv{i}", f"bn{i}", f"act{i}") for i in (1, 2, 3)],
             gpunet.ConvBnAct: [("conv", "bn1", "act1")],
             gpunet.InvertedResidual: [("conv_pw", "bn1", "act1"), ("conv_dw", "bn2", "act2")],
             gpunet.EdgeResidual: [("conv_exp", "bn1", "act1")]}
    fused = 0
    for module in model.modules():
        for cls, names in pairs.items():
            if isinstance(module, cls):
                for conv, bn, act in names:
                    c, b, a = getattr(module, conv, None), getattr(module, bn, None), getattr(module, act, None)
                    if isinstance(c, torch.nn.Conv2d) and isinstance(b, torch.nn.Identity) and \
                            isinstance(a, torch.nn.ReLU):
                        setattr(module, conv, CudnnConvReLU(c))
                        setattr(module, act, torch.nn.Identity())
                        fused += 1
                break
    print(f"fused {fused} conv+ReLU pairs", file=sys.stderr)
    return model


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--configs", nargs="*", default=list(CONFIGS))
    p.add_argument("--baselines", nargs="*", default=["plain-graph", "folded-graph", "timm-graph", "timm-compile"])
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--json", required=True)
    p.add_argument("--profile", action="store_true",
                   help="profile the graph replay of each config: kernel count and GPU time by kernel kind")
    args = p.parse_args()
    info = get_model_info(args.model)
    size = args.image_size or info.input_size
    bs = args.batch_size
    iters = args.iters or (300 if bs == 1 else 40)
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    x = torch.randn(bs, 3, size, size, device=device).half().contiguous(memory_format=torch.channels_last)
    rows = []

    def record(label, make):
        torch.cuda.empty_cache()
        t0 = time.perf_counter()
        try:
            run = make()
            run(x)
            torch.cuda.synchronize()
        except Exception as exc:  # keep going: one failing configuration is a finding, not the end of the run
            traceback.print_exc()
            rows.append({"config": label, "error": f"{type(exc).__name__}: {exc}"[:500]})
            return
        setup = time.perf_counter() - t0
        extra = {}
        if getattr(run, "_graph", None) is not None:
            # The floor: the graph alone, without the input copy and the float32 output copy a caller pays for.
            extra["replay_only_ms"] = round(statistics.median(_time(lambda _: run._graph.replay(), x, 20, iters)), 4)
            if args.profile:
                extra["profile"] = profile_replay(run._graph)
        times = sorted(_time(run, x, 20, iters))
        med = statistics.median(times)
        row = {"model": info.name, "batch": bs, "size": size, "config": label, "median_ms": round(med, 4),
               "p10_ms": round(times[len(times) // 10], 4), "img_s": round(bs / med * 1e3, 1),
               "setup_s": round(setup, 1), **extra}
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)

    for base in args.baselines:
        if base.startswith("cudnn-relu"):
            from image_classification.inference.fast import fold_batchnorm

            compiled = base.endswith("compile")

            def make(compiled=compiled):
                model = fuse_conv_relu(fold_batchnorm(create_model(info.name)))
                run = _plain(model, device, "fp16", True)
                if compiled:
                    opts = {"freezing": True, "conv_1x1_as_mm": True} if bs <= 8 else {}
                    model = model.eval().to(device, torch.float16).to(memory_format=torch.channels_last)
                    run = torch.inference_mode()(torch.compile(model, options=opts or None))
                return _graphed(run, x)
            record(base, make)
        elif base == "plain-graph":
            record(base, lambda: _graphed(_plain(create_model(info.name), device, "fp16", True), x))
        elif base == "folded-graph":
            record(base, lambda: prepare_for_inference(create_model(info.name), device=device, precision="fp16",
                                                       cuda_graph=True, batch_size=bs, image_size=size))
        elif base.startswith("timm") and info.name in PEERS["timm"]:
            import timm

            model = timm.create_model(PEERS["timm"][info.name])
            if base == "timm-graph":
                record(base, lambda m=model: _graphed(_plain(m, device, "fp16", True), x))
            else:
                def make(m=model):
                    m = m.eval().to(device, torch.float16).to(memory_format=torch.channels_last)
                    return _graphed(torch.inference_mode()(torch.compile(m)), x)
                record(base, make)
    for name in args.configs:
        mode, options = CONFIGS[name]
        record(name, lambda m=mode, o=options: prepare_for_inference(
            create_model(info.name), device=device, precision="fp16", compile=m, compile_options=o,
            cuda_graph=True, batch_size=bs, image_size=size))
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
