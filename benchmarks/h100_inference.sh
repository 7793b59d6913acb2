#!/usr/bin/env bash
# The headline inference benchmark (README table): this project's EfficientNet-B0 and GPUNet-0 beside timm's and
# torchvision's EfficientNet-B0, fp16, batch 1 and 256, in one run on one GPU. Usage: bash benchmarks/h100_inference.sh OUTDIR
set -euo pipefail
OUT="${1:-.}"
export PYTHONPATH="${PYTHONPATH:-.}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m image_classification.benchmark --model efficientnet-b0 -b 1 256 --modes eager graph fast \
  --peers timm torchvision --peer-modes eager graph compile-graph --profile --json "$OUT/efficientnet-b0.json" \
  | tee "$OUT/efficientnet-b0.txt"
python3 -m image_classification.benchmark --model gpunet-0 -b 1 256 --modes eager graph folded-graph fast \
  --profile --json "$OUT/gpunet-0.json" | tee "$OUT/gpunet-0.txt"
