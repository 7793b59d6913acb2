#!/usr/bin/env bash
# GPUNet-D2, FP32, CPU: inference benchmark sweeping batch sizes 1-32 on the CPU. Usage: bash gpunet/inference/FP32/CPU_gpunet-d2_FP32.sh [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). Writes raport_<bs>.json per batch size.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
for bs in 1 2 4 8 16 32; do
  python "$HERE/launch.py" --model gpunet-d2 --precision FP32 --mode benchmark_inference --platform CPU "$DATA_DIR" -b "$bs" --workspace "${1:-./}" --raport-file "raport_${bs}.json" "${@:2}"
done
