"""GPUNet entry points (train.py, validate.py, eval.py) and upstream's Python API (configs.model_hub,
models.gpunet_builder), on the shared image_classification core."""
