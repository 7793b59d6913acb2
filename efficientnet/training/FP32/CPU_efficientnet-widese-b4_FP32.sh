#!/usr/bin/env bash
# EfficientNet-WideSE-B4, FP32, CPU: convergence training (400 epochs, train+val, checkpoints) on the CPU, one process. Usage: bash efficientnet/training/FP32/CPU_efficientnet-widese-b4_FP32.sh [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). No GPUs: one process on the CPU.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
python "$HERE/launch.py" --model efficientnet-widese-b4 --precision FP32 --mode convergence --platform CPU "$DATA_DIR" --workspace "${1:-./}" --raport-file raport.json "${@:2}"
