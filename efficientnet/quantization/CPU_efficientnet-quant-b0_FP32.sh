#!/usr/bin/env bash
# EfficientNet-B0, FP32, CPU: INT8 with NVIDIA Model Optimizer, the FP32 weights calibrated then fine-tuned for 10 epochs with fake quantization (upstream's efficientnet/quantization recipe), on the CPU, one process. Usage: bash efficientnet/quantization/CPU_efficientnet-quant-b0_FP32.sh FP32_WEIGHTS [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). No GPUs: one process on the CPU. Needs the [quant] extra.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
FP32_WEIGHTS="${1:?usage: FP32_WEIGHTS [WORKSPACE] [extra main.py flags]; FP32_WEIGHTS is the checkpoint to quantize}"
python "$HERE/launch.py" --model efficientnet-quant-b0 --precision FP32 --mode quantize --platform CPU "$DATA_DIR" --pretrained-from-file "$FP32_WEIGHTS" --workspace "${2:-./}" --raport-file raport.json "${@:3}"
