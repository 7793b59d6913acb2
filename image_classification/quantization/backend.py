"""Importing NVIDIA Model Optimizer: optional, quiet, and one clear line when it is missing."""
from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings

from common.cli_errors import UserError

MODELOPT_REQUIREMENT = "nvidia-modelopt==0.47.0"
# modelopt imports requests and huggingface_hub without declaring them, so a bare install of it fails to import.
INSTALL_HINT = f"pip install '{MODELOPT_REQUIREMENT}' requests huggingface_hub (the project's [quant] extra)"


@contextlib.contextmanager
def quiet():
    """Silence modelopt's chatter: its "Inserted N quantizers" print (stdout is results for classify.py --json),
    the device warning it gives for quantizer-only modules before .to(device), and import-time notices."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Could not identify the device")
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit\.script")
        yield


def import_modelopt(purpose: str = "INT8 quantization"):
    """(modelopt.torch.quantization, modelopt.torch.opt) with this project's quantized modules registered."""
    # torch's extension loader logs a warning when modelopt probes for CUDA on a CPU-only machine; it is noise here.
    extension_log = logging.getLogger("torch.utils.cpp_extension")
    level = extension_log.level
    extension_log.setLevel(logging.ERROR)
    try:
        with quiet():
            # Import-time notices (e.g. about an untested transformers version) concern modelopt's LLM plugins.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"modelopt")
            import modelopt.torch.opt as mto
            import modelopt.torch.quantization as mtq
    except ImportError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{purpose} needs NVIDIA Model Optimizer, which cannot be imported ({reason}): "
                        f"{INSTALL_HINT}") from None
    finally:
        extension_log.setLevel(level)
    from .modules import register_quantized_modules

    register_quantized_modules(mtq)
    return mtq, mto


def modelopt_version() -> str:
    import modelopt

    return str(getattr(modelopt, "__version__", "unknown"))


def load_cuda_kernels() -> None:
    """modelopt's CUDA fake-quantization kernels, loaded before the first quantized forward on a GPU: modelopt builds
    them on first use (about a minute, once; torch caches the build) and announces that on stdout, which is results
    for classify.py --json. Here it is quiet, with one note on stderr while it builds."""
    from modelopt.torch.quantization.extensions import get_cuda_ext

    if hasattr(get_cuda_ext, "extension"):
        return
    print("note: loading modelopt's CUDA fake-quantization kernels (built on first use, then cached)",
          file=sys.stderr, flush=True)
    with quiet():
        get_cuda_ext()
