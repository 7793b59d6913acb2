#!/usr/bin/env bash
# EfficientNet-B4, AMP, T4: convergence training (400 epochs, train+val, checkpoints), one process per GPU. Usage: bash efficientnet/training/AMP/T4_efficientnet-b4_AMP.sh [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). GPUs: $NGPUS (default 8).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
NGPUS="${NGPUS:-8}"
python "$HERE/multiproc.py" --nproc_per_node "$NGPUS" "$HERE/launch.py" --model efficientnet-b4 --precision AMP --mode convergence --platform T4 "$DATA_DIR" --workspace "${1:-./}" --raport-file raport.json "${@:2}"
