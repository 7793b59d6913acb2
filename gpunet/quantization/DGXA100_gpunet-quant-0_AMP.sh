#!/usr/bin/env bash
# GPUNet-0, AMP, DGXA100: INT8 with NVIDIA Model Optimizer, the FP32 weights calibrated then fine-tuned for 10 epochs with fake quantization (upstream EfficientNet-B0's QAT recipe), one process per GPU. Usage: bash gpunet/quantization/DGXA100_gpunet-quant-0_AMP.sh FP32_WEIGHTS [WORKSPACE] [extra main.py flags]
# Data: $DATA_DIR (default /imagenet, with train/ and val/). GPUs: $NGPUS (default 8). Needs the [quant] extra.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${DATA_DIR:-/imagenet}"
FP32_WEIGHTS="${1:?usage: FP32_WEIGHTS [WORKSPACE] [extra main.py flags]; FP32_WEIGHTS is the checkpoint to quantize}"
NGPUS="${NGPUS:-8}"
python "$HERE/multiproc.py" --nproc_per_node "$NGPUS" "$HERE/launch.py" --model gpunet-quant-0 --precision AMP --mode quantize --platform DGXA100 "$DATA_DIR" --pretrained-from-file "$FP32_WEIGHTS" --workspace "${2:-./}" --raport-file raport.json "${@:3}"
