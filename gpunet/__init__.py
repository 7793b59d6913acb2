"""GPUNet: entry scripts on the shared image_classification core, and upstream's Python API (configs.model_hub,
models.gpunet_builder)."""
