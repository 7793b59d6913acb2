"""torch.hub entry points, with upstream DeepLearningExamples' names.

    import torch
    model = torch.hub.load("/path/to/this/repo", "nvidia_efficientnet_b0", source="local", pretrained=False)
    gpunet = torch.hub.load("/path/to/this/repo", "nvidia_gpunet", source="local", model_type="GPUNet-0")
    utils = torch.hub.load("/path/to/this/repo", "nvidia_convnets_processing_utils", source="local")

pretrained=True (upstream's default) reads the published NGC weights from the torch hub cache and downloads nothing:
when the file is not there, the error names the URL to fetch and where to save it (`$TORCH_HOME/hub/checkpoints`).
pretrained_from_file=PATH loads a checkpoint of any layout the project reads instead.

torch.hub puts this folder first on sys.path while it imports this file and calls the entry point, which is what
makes `image_classification` importable below; the imports sit inside the functions so that torch.hub can check
`dependencies` before any of them runs.
"""

dependencies = ["torch", "torchvision"]


def _hub_model(name, pretrained, pretrained_from_file, **kwargs):
    from image_classification.models.hub import hub_model
    from image_classification.quantization.state import restore_quantizers

    # The models package cannot restore an INT8 checkpoint's quantizers (that needs the quantization package
    # above it): the entry point hands the restorer down, so pretrained_from_file may be a quant_main.py checkpoint.
    return hub_model(name, pretrained, pretrained_from_file, restore_quantizers=restore_quantizers, **kwargs)


def nvidia_efficientnet_b0(pretrained=True, pretrained_from_file=None, **kwargs):
    """EfficientNet-B0 (224 px), upstream ConvNets' layout."""
    return _hub_model("efficientnet-b0", pretrained, pretrained_from_file, **kwargs)


def nvidia_efficientnet_b4(pretrained=True, pretrained_from_file=None, **kwargs):
    """EfficientNet-B4 (380 px), upstream ConvNets' layout."""
    return _hub_model("efficientnet-b4", pretrained, pretrained_from_file, **kwargs)


def nvidia_efficientnet_widese_b0(pretrained=True, pretrained_from_file=None, **kwargs):
    """EfficientNet-WideSE-B0 (224 px): squeeze-excitation on the expanded width."""
    return _hub_model("efficientnet-widese-b0", pretrained, pretrained_from_file, **kwargs)


def nvidia_efficientnet_widese_b4(pretrained=True, pretrained_from_file=None, **kwargs):
    """EfficientNet-WideSE-B4 (380 px): squeeze-excitation on the expanded width."""
    return _hub_model("efficientnet-widese-b4", pretrained, pretrained_from_file, **kwargs)


def nvidia_efficientnet(type="efficientnet-b0", pretrained=True, **kwargs):  # `type`: upstream's keyword
    """Any EfficientNet by name: efficientnet-b0 ... -b7, efficientnet-widese-b0 ... -b7 (also efficientnet_b0 and
    upstream's 'efficient-b0'). Published weights exist for b0, b4, widese-b0 and widese-b4."""
    from image_classification.models.hub import efficientnet_by_type

    return _hub_model(efficientnet_by_type(type), pretrained, kwargs.pop("pretrained_from_file", None), **kwargs)


def nvidia_gpunet(pretrained=True, model_type="GPUNet-0", model_math="fp32", **kwargs):
    """GPUNet by upstream's model_type (GPUNet-0, -1, -2, -P0, -P1, -D1, -D2) or latency key (0.65ms ... 2.25ms-D);
    model_math "fp16" returns the model in half precision. The published weights are the EMA ones when present."""
    from image_classification.models.hub import apply_model_math, gpunet_by_type

    name = gpunet_by_type(model_type)
    model = _hub_model(name, pretrained, kwargs.pop("pretrained_from_file", None), **kwargs)
    return apply_model_math(model, model_math)


def nvidia_convnets_processing_utils():
    """Upstream's helpers: prepare_input_from_uri(path, cuda=False), pick_n_best(probabilities, n=5),
    get_imgnet_classes()."""
    from image_classification.inference.hub_processing import ConvNetsProcessing

    return ConvNetsProcessing()
