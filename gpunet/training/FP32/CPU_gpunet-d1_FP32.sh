#!/usr/bin/env bash
# GPUNet-D1, FP32, CPU: convergence training (450 epochs, train+val, checkpoints) on the CPU, one process. Usage: bash gpunet/training/FP32/CPU_gpunet-d1_FP32.sh [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). No GPUs: one process on the CPU.
# No distillation on the CPU (see configs.yml); add --teacher, --teacher-img-size and --teacher-checkpoint to distil.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
python "$HERE/launch.py" --model gpunet-d1 --precision FP32 --mode convergence --platform CPU "$DATA_DIR" --workspace "${1:-./}" --raport-file raport.json "${@:2}"
