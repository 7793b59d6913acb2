#!/usr/bin/env bash
# GPUNet-P0, TF32, DGXA100: convergence training (450 epochs, train+val, checkpoints), one process per GPU. Usage: bash gpunet/training/TF32/DGXA100_gpunet-p0_TF32.sh [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). GPUs: $NGPUS (default 8).
# Distils from tf_efficientnet_b2 at 260 px: $TEACHER_CHECKPOINT must name the teacher's weights (nothing is downloaded).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
NGPUS="${NGPUS:-8}"
if [[ -z "${TEACHER_CHECKPOINT:-}" ]]; then
  echo "error: set TEACHER_CHECKPOINT to the weights of GPUNet-P0's teacher tf_efficientnet_b2" >&2
  exit 2
fi
python "$HERE/multiproc.py" --nproc_per_node "$NGPUS" "$HERE/launch.py" --model gpunet-p0 --precision TF32 --mode convergence --platform DGXA100 "$DATA_DIR" --workspace "${1:-./}" --raport-file raport.json --teacher-checkpoint "$TEACHER_CHECKPOINT" "${@:2}"
