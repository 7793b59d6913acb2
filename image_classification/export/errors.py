"""The exporters' own errors, beneath every exporter (onnx.py, qdq.py, tensorrt.py): none imports another for them."""
from __future__ import annotations

from common.cli_errors import UserError


class VerificationError(UserError):
    """The exported graph does not compute what the PyTorch model computes."""

    def __init__(self, message: str, max_abs_diff: float):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
