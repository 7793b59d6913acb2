# Importing the families fills the registry; timm_registry then mirrors it into timm's (when timm is installed),
# so it must come after them.
from . import efficientnet, gpunet, timm_registry  # noqa: F401
from .factory import create_model
from .registry import ModelInfo, get_model_info, list_models, register_model

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]
