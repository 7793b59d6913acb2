"""The names command lines offer for the data side, kept free of torch so that building a parser (and `--help`)
does not import it; loader.py and transforms.py map the same names to their implementations."""
from __future__ import annotations

BACKENDS = ("pytorch", "synthetic", "dali-cpu", "dali-gpu", "pytorch-gpu")
# The pytorch backend's resize interpolations (transforms.INTERPOLATIONS maps each to torchvision's mode).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
