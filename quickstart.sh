#!/usr/bin/env bash
# Two-minute tour on a CPU: a virtual environment, the built-in digits data, EfficientNet-B0 trained through
# upstream's launch.py presets, the best checkpoint evaluated, and the learning curves plotted.
# Usage: bash quickstart.sh            (env: PYTHON=python3, VENV=.venv, OUT=runs/quickstart, EPOCHS=8)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
OUT="${OUT:-runs/quickstart}"
DEFAULT_EPOCHS=8
EPOCHS="${EPOCHS:-$DEFAULT_EPOCHS}"
step() { printf '\n==> %s\n' "$*"; }

step "virtual environment in $VENV and the project (PyTorch is large: a minute or two)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[plot]"
PY="$VENV/bin/python"

step "digits data set: data/digits/{train,val}/<digit>/*.jpg"
"$PY" -m common.datasets.digits --output data/digits --size 64

# The efficientnet-b0 CPU preset is upstream's ImageNet recipe (RMSprop, AutoAugment, mixup, 224 px, 400 epochs);
# 8x8 digits upscaled to 64 px want a short, gentle recipe instead, given here as explicit overrides.
DIGITS=(--image-size 64 -b 64 --optimizer-batch-size -1 --optimizer sgd --lr 0.05 --momentum 0.9
        --weight-decay 5e-5 --lr-schedule cosine --warmup 1 --label-smoothing 0.1 --mixup 0 --augmentation none
        --crop-scale 0.6 1 --hflip 0 --bn_momentum 0.1 --seed 0)

step "training EfficientNet-B0 for $EPOCHS epochs (about 10 s each on 2 cores)"
rm -rf "$OUT"
"$PY" efficientnet/launch.py --model efficientnet-b0 --precision FP32 --platform CPU --mode convergence \
    data/digits --workspace "$OUT" --epochs "$EPOCHS" --raport-file raport.json "${DIGITS[@]}"

step "evaluating the best checkpoint"
"$PY" efficientnet/launch.py --model efficientnet-b0 --precision FP32 --platform CPU --mode evaluate \
    data/digits --workspace "$OUT/evaluate" --pretrained-from-file "$OUT/model_best.pth.tar" \
    --raport-file raport.json "${DIGITS[@]}"

step "learning curves"
"$PY" -m common.plot_reports "$OUT/raport.json" -o "$OUT/curves.png" --labels efficientnet-b0

# The 90% gate holds for the default epoch count, which the README's number was measured with; a shorter run
# (EPOCHS=2) that learned less is not a failure.
"$PY" - "$OUT" "$EPOCHS" "$DEFAULT_EPOCHS" <<'PYEOF'
import json, sys
from pathlib import Path
out, epochs, default_epochs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
top1 = json.loads((out / "evaluate" / "summary.json").read_text())["val"]["top1"]
print(f"\nEfficientNet-B0 on the digits: {top1:.2f}% top-1 on {out / 'evaluate'} (held-out val/)")
print(f"  best checkpoint: {out / 'model_best.pth.tar'}")
print(f"  training report: {out / 'raport.json'} (DLLogger JSON), summary: {out / 'summary.json'}")
print(f"  curves:          {out / 'curves.png'}")
if epochs != default_epochs:
    print(f"  (the 90% top-1 check applies to the default {default_epochs} epochs; this run had {epochs})")
elif top1 < 90.0:
    sys.exit(f"error: expected at least 90% top-1 after {epochs} epochs, got {top1:.2f}%")
PYEOF
