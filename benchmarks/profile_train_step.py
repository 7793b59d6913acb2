"""Where a compiled training step's GPU time goes: GPU time per kernel and convolution/matmul time by input shape.

    PYTHONPATH=. python benchmarks/profile_train_step.py --out DIR                       # GPUNet-0, batch 192, 320 px
    PYTHONPATH=. python benchmarks/profile_train_step.py --model efficientnet-b0 --batch-size 256 --out DIR

The plain loop of benchmarks/train_speed.py (fp16 AMP, channels_last, SGD with Nesterov momentum, label smoothing
0.1), compiled with default options, warmed up for 8 steps, then profiled for --steps. Writes DIR/conv_by_shape.txt
(each convolution/matmul op by input shapes, ms per step) and DIR/kernels_full.txt (every CUDA kernel, ms per step).
It made benchmarks/results/2026-11-24-h100/run5/conv_by_shape.txt and kernels_full.txt (GPUNet-0's fp32 BatchNorm
recomputation buffers; issue 19's profile); the generated code stays in TORCHINDUCTOR_CACHE_DIR for reading.
"""
from __future__ import annotations

import argparse
from pathlib import Path

CONV_OPS = ("aten::cudnn_convolution", "aten::convolution_backward", "aten::_convolution", "aten::mm", "aten::addmm")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gpunet-0")
    p.add_argument("--batch-size", type=int, default=192)
    p.add_argument("--image-size", type=int, default=320)
    p.add_argument("--steps", type=int, default=5, help="profiled steps (after 8 warm-up steps)")
    p.add_argument("--out", required=True, help="folder for conv_by_shape.txt and kernels_full.txt")
    args = p.parse_args(argv)

    import torch
    import torch.nn as nn
    from torch.profiler import ProfilerActivity, profile

    from image_classification.models import create_model

    if not torch.cuda.is_available():
        raise SystemExit("profile_train_step.py needs a CUDA GPU")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    model = create_model(args.model).cuda().to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-5)
    scaler = torch.amp.GradScaler("cuda")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    compiled = torch.compile(model)
    size = args.image_size
    x = torch.randn(args.batch_size, 3, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch_size,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.float16):
            loss = loss_fn(compiled(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    for _ in range(8):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
    steps = args.steps
    rows = sorted(((e.device_time_total / steps / 1e3, e.key, str(e.input_shapes)[:160], e.count // steps)
                   for e in prof.key_averages(group_by_input_shape=True) if e.key in CONV_OPS), reverse=True)
    with open(out / "conv_by_shape.txt", "w") as f:
        f.write(f"total listed {sum(r[0] for r in rows):.2f} ms/step\n")
        for ms, key, shapes, count in rows:
            f.write(f"{ms:7.3f} ms x{count} {key} {shapes}\n")
    kernels: dict[str, float] = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            kernels[e.name] = kernels.get(e.name, 0) + e.device_time / steps / 1e3
    with open(out / "kernels_full.txt", "w") as f:
        f.write(f"total {sum(kernels.values()):.2f} ms/step\n")
        for name, ms in sorted(kernels.items(), key=lambda kv: -kv[1]):
            f.write(f"{ms:7.3f} {name[:200]}\n")
    print(f"wrote {out / 'conv_by_shape.txt'} and {out / 'kernels_full.txt'}")


if __name__ == "__main__":
    main()
