# Importing the families fills the registry.
from . import efficientnet, gpunet  # noqa: F401
from .registry import ModelInfo, create_model, get_model_info, list_models, register_model

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]
