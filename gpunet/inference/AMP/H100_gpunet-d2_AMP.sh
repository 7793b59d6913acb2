#!/usr/bin/env bash
# GPUNet-D2, AMP, H100: inference benchmark sweeping batch sizes 1-256 on one GPU (pick it with CUDA_VISIBLE_DEVICES). Usage: bash gpunet/inference/AMP/H100_gpunet-d2_AMP.sh [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). Writes raport_<bs>.json per batch size.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
for bs in 1 2 4 8 16 32 64 128 256; do
  python "$HERE/launch.py" --model gpunet-d2 --precision AMP --mode benchmark_inference --platform H100 "$DATA_DIR" -b "$bs" --workspace "${1:-./}" --raport-file "raport_${bs}.json" "${@:2}"
done
