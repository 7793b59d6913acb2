#!/usr/bin/env bash
# GPUNet-D1, FP32, DGX1V-32G: convergence training (450 epochs, train+val, checkpoints), one process per GPU. Usage: bash gpunet/training/FP32/DGX1V-32G_gpunet-d1_FP32.sh [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). GPUs: $NGPUS (default 8).
# Distils from tf_efficientnet_b5_ns at 456 px: $TEACHER_CHECKPOINT must name the teacher's weights (nothing is downloaded).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
NGPUS="${NGPUS:-8}"
if [[ -z "${TEACHER_CHECKPOINT:-}" ]]; then
  echo "error: set TEACHER_CHECKPOINT to the weights of GPUNet-D1's teacher tf_efficientnet_b5_ns" >&2
  exit 2
fi
python "$HERE/multiproc.py" --nproc_per_node "$NGPUS" "$HERE/launch.py" --model gpunet-d1 --precision FP32 --mode convergence --platform DGX1V-32G "$DATA_DIR" --workspace "${1:-./}" --raport-file raport.json --teacher-checkpoint "$TEACHER_CHECKPOINT" "${@:2}"
