"""Upstream's `models` package: `gpunet_builder.GPUNet_Builder` over the shared core's GPUNet.

Upstream scripts import it as `models.gpunet_builder` from the GPUNet folder; the repository root is then put on
sys.path so that the shared core can be imported.
"""
import sys
from pathlib import Path

if __name__.partition(".")[0] != "gpunet":  # imported as a top-level package from inside gpunet/
    _root = str(Path(__file__).resolve().parents[2])
    if _root not in sys.path:
        sys.path.insert(0, _root)
