"""The kernel tests run the Triton ops on the GPU when there is one, else on the CPU through Triton's interpreter.

TRITON_INTERPRET must be set before a kernel is first defined (Triton reads it when `@triton.jit` runs, and the
kernel modules are imported only when an op first runs), so it is set for these tests alone and restored after
them: tests elsewhere never see it. (The kernels call no Triton library function, so it does not matter whether
Triton itself was imported before.)
"""
import importlib.util
import os

import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("Triton is not installed", allow_module_level=True)


@pytest.fixture(scope="package", autouse=True)
def kernel_device():
    if torch.cuda.is_available():
        yield torch.device("cuda")
        return
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield torch.device("cpu")
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before
