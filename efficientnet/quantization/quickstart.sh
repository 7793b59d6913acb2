#!/usr/bin/env bash
# INT8 on the digits, on a CPU: quickstart.sh's FP32 EfficientNet-B0 (trained first when $FP32 has no checkpoint),
# calibrated to INT8 with max and with histogram (PTQ), then fine-tuned with fake quantization (QAT), all through
# upstream's names (efficientnet-quant-b0, launch.py --mode quantize); prints the top-1 of each and exports the QAT
# model as Q/DQ ONNX, checked with onnxruntime.
# Usage: bash efficientnet/quantization/quickstart.sh   (env: VENV=.venv, FP32=runs/quickstart, OUT=runs/quantization,
#        EPOCHS=2; PYTHON=python3 when there is no $VENV)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV="${VENV:-.venv}"
FP32="${FP32:-runs/quickstart}"
OUT="${OUT:-runs/quantization}"
EPOCHS="${EPOCHS:-2}"
step() { printf '\n==> %s\n' "$*"; }

if [ ! -f "$FP32/model_best.pth.tar" ]; then
    step "no FP32 checkpoint in $FP32: running quickstart.sh first"
    OUT="$FP32" VENV="$VENV" bash quickstart.sh
fi
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="${PYTHON:-python3}"
if ! "$PY" -c "import modelopt.torch.quantization, onnxruntime" 2>/dev/null; then
    step "NVIDIA Model Optimizer and onnxruntime (the project's [quant] and [onnx] extras)"
    "$PY" -m pip install --quiet -e ".[quant,onnx]"
fi

# quickstart.sh's digits settings (64 px, its augmentation and BatchNorm momentum) on top of the CPU presets.
DIGITS=(data/digits --image-size 64 -b 64 --bn_momentum 0.1 --seed 0 --crop-scale 0.6 1 --hflip 0
        --raport-file raport.json --no-progress)
LAUNCH=("$PY" efficientnet/launch.py --model efficientnet-quant-b0 --precision FP32 --platform CPU)
rm -rf "$OUT"

step "PTQ: calibrating the FP32 weights with max (10 batches), then validating"
"${LAUNCH[@]}" --mode evaluate "${DIGITS[@]}" --pretrained-from-file "$FP32/model_best.pth.tar" \
    --workspace "$OUT/ptq-max" --calib-method max

step "PTQ: calibrating with histogram (99.99th percentile, upstream's default), then validating"
"${LAUNCH[@]}" --mode evaluate "${DIGITS[@]}" --pretrained-from-file "$FP32/model_best.pth.tar" \
    --workspace "$OUT/ptq-histogram" --calib-method histogram

# The preset's 10 epochs at lr 0.0125 are for ImageNet; the digits want a short, gentle fine-tune.
step "QAT: histogram calibration, then $EPOCHS epochs of fake-quantized fine-tuning"
"${LAUNCH[@]}" --mode quantize "${DIGITS[@]}" --pretrained-from-file "$FP32/model_best.pth.tar" \
    --workspace "$OUT/qat" --epochs "$EPOCHS" --lr 0.005 --weight-decay 5e-5 --label-smoothing 0.1

step "Q/DQ ONNX of the QAT model, checked against the fake-quantized PyTorch model with onnxruntime"
"$PY" efficientnet/model2onnx.py --pretrained-from-file "$OUT/qat/model_best.pth.tar" --output "$OUT/qat/int8.onnx"

"$PY" - "$FP32" "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
fp32, out = Path(sys.argv[1]), Path(sys.argv[2])
def top1(path, key):
    summary = json.loads(path.read_text())
    return summary["best_top1"] if key == "best" else summary["val"]["top1"]
fp32_eval = fp32 / "evaluate" / "summary.json"
rows = [("FP32", top1(fp32_eval, "val") if fp32_eval.is_file() else top1(fp32 / "summary.json", "best")),
        ("INT8 PTQ, max", top1(out / "ptq-max" / "summary.json", "val")),
        ("INT8 PTQ, histogram", top1(out / "ptq-histogram" / "summary.json", "val")),
        ("INT8 QAT", top1(out / "qat" / "summary.json", "best"))]
print("\nEfficientNet-B0 (efficientnet-quant-b0) on the digits, held-out val/ top-1:")
for name, value in rows:
    print(f"  {name:22} {value:6.2f}%")
print(f"  ONNX (Q/DQ): {out / 'qat' / 'int8.onnx'}")
PYEOF
