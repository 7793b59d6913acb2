"""The shared core: models, data, training, inference for EfficientNet and GPUNet."""
