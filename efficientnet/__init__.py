"""EfficientNet entry points in upstream ConvNets' dialect (main.py, launch.py, configs.yml, recipes)."""
