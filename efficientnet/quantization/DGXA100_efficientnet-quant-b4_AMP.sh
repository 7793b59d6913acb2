#!/usr/bin/env bash
# EfficientNet-B4, AMP, DGXA100: INT8 with NVIDIA Model Optimizer, the FP32 weights calibrated then fine-tuned for 2 epochs with fake quantization (upstream's efficientnet/quantization recipe), one process per GPU. Usage: bash efficientnet/quantization/DGXA100_efficientnet-quant-b4_AMP.sh FP32_WEIGHTS [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). GPUs: $NGPUS (default 8). Needs the [quant] extra.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
FP32_WEIGHTS="${1:?usage: FP32_WEIGHTS [WORKSPACE] [extra main.py flags]; FP32_WEIGHTS is the checkpoint to quantize}"
NGPUS="${NGPUS:-8}"
python "$HERE/multiproc.py" --nproc_per_node "$NGPUS" "$HERE/launch.py" --model efficientnet-quant-b4 --precision AMP --mode quantize --platform DGXA100 "$DATA_DIR" --pretrained-from-file "$FP32_WEIGHTS" --workspace "${2:-./}" --raport-file raport.json "${@:3}"
