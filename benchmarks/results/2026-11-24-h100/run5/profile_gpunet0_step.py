"""Where GPUNet-0's compiled training step goes: GPU time per kernel and cuDNN convolution time by shape, batch 192 at
320 px, fp16 AMP, channels_last, the plain loop of benchmarks/train_speed.py compiled with default options.
Writes conv_by_shape.txt and kernels_full.txt under $OUT. (Run from the repository root with PYTHONPATH=.; the
generated code it left in TORCHINDUCTOR_CACHE_DIR showed the fp32 BatchNorm recomputation that run5's README
describes.)"""
import os

import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile

from image_classification.models import create_model

STEPS = 5
CONV_OPS = ("aten::cudnn_convolution", "aten::convolution_backward", "aten::_convolution", "aten::mm", "aten::addmm")

out = os.environ["OUT"]
torch.backends.cudnn.benchmark = True
model = create_model("gpunet-0").cuda().to(memory_format=torch.channels_last).train()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-5)
scaler = torch.amp.GradScaler("cuda")
loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
compiled = torch.compile(model)
x = torch.randn(192, 3, 320, 320, device="cuda").contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 1000, (192,), device="cuda")


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
    for _ in range(STEPS):
        step()
    torch.cuda.synchronize()
rows = sorted(((e.device_time_total / STEPS / 1e3, e.key, str(e.input_shapes)[:160], e.count // STEPS)
               for e in prof.key_averages(group_by_input_shape=True) if e.key in CONV_OPS), reverse=True)
with open(f"{out}/conv_by_shape.txt", "w") as f:
    f.write(f"total listed {sum(r[0] for r in rows):.2f} ms/step\n")
    for ms, key, shapes, count in rows:
        f.write(f"{ms:7.3f} ms x{count} {key} {shapes}\n")
kernels: dict[str, float] = {}
for e in prof.events():
    if e.device_type == torch.autograd.DeviceType.CUDA:
        kernels[e.name] = kernels.get(e.name, 0) + e.device_time / STEPS / 1e3
with open(f"{out}/kernels_full.txt", "w") as f:
    f.write(f"total {sum(kernels.values()):.2f} ms/step\n")
    for name, ms in sorted(kernels.items(), key=lambda kv: -kv[1]):
        f.write(f"{ms:7.3f} {name[:200]}\n")
