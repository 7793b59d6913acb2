#!/usr/bin/env bash
# GPUNet-1, AMP, H100: convergence training (450 epochs, train+val, checkpoints), one process per GPU. Usage: bash gpunet/training/AMP/H100_gpunet-1_AMP.sh [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). GPUs: $NGPUS (default 8).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
NGPUS="${NGPUS:-8}"
python "$HERE/multiproc.py" --nproc_per_node "$NGPUS" "$HERE/launch.py" --model gpunet-1 --precision AMP --mode convergence --platform H100 "$DATA_DIR" --workspace "${1:-./}" --raport-file raport.json "${@:2}"
