"""Upstream's `nvidia_convnets_processing_utils` for torch.hub users, without its downloads.

    utils = torch.hub.load(repo, "nvidia_convnets_processing_utils", source="local")
    batch = utils.prepare_input_from_uri("cat.jpg")
    probabilities = torch.nn.functional.softmax(model(batch), dim=1)
    utils.pick_n_best(probabilities, n=5)   # prints  sample 0: [('tabby', '61.2%'), ...]

Differences from upstream: an image URL is refused (upstream fetched it with requests) and the class names come from
torchvision's ImageNet metadata (upstream downloaded LOC_synset_mapping.json into the working directory);
`get_imgnet_classes` returns a list, not a numpy array; a greyscale or RGBA image is converted to RGB; and
`pick_n_best` refuses logits, whose "percentages" upstream printed as they were.
"""
from __future__ import annotations

import os

import torch

from common.cli_errors import UserError

from .classify import IMAGENET_CLASSES, image_error_reason, imagenet_class_names

# Upstream's hub preprocessing: Resize(256) (bilinear), CenterCrop(224), ImageNet mean/std; whatever the model.
RESIZE = 256
CROP = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Softmax rows sum to 1 up to rounding (fp16 outputs included); logits almost never do.
_PROBABILITY_TOLERANCE = 1e-2


class ConvNetsProcessing:
    """The object `nvidia_convnets_processing_utils()` returns; its helpers are static, as upstream's were."""

    @staticmethod
    def prepare_input_from_uri(uri, cuda: bool = False) -> torch.Tensor:
        """An image file -> a normalised (1, 3, 224, 224) float tensor, on the GPU with cuda=True."""
        from image_classification.data.folder import read_rgb
        from image_classification.data.transforms import val_transform

        if not isinstance(uri, (str, os.PathLike)):
            raise UserError(f"prepare_input_from_uri takes an image path, got {type(uri).__name__}")
        path = os.fspath(uri)
        if "://" in path:
            raise UserError(f"{path} is a URL, and nothing is downloaded here: save the image and pass its path")
        if cuda and not torch.cuda.is_available():
            raise UserError("cuda=True needs a CUDA GPU, and none is available: call with cuda=False")
        try:
            image = read_rgb(path)
        except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
            raise UserError(f"cannot read image {path}: {image_error_reason(exc, path)}") from None
        crop = val_transform(CROP, crop_pct=CROP / RESIZE, interpolation="bilinear")(image)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        batch = ((crop.float() / 255.0 - mean) / std).unsqueeze(0)
        return batch.cuda() if cuda else batch

    @staticmethod
    def pick_n_best(predictions, n: int = 5) -> list[list[tuple[str, str]]]:
        """The n most probable ImageNet classes of each row of softmax `predictions`: prints and returns
        `[(class, 'xx.x%'), ...]` per sample."""
        probabilities = torch.as_tensor(predictions).detach().float().cpu()
        if probabilities.dim() == 1:
            probabilities = probabilities.unsqueeze(0)
        if probabilities.dim() != 2 or probabilities.shape[1] != IMAGENET_CLASSES:
            raise UserError(f"pick_n_best names ImageNet's {IMAGENET_CLASSES} classes: predictions must be "
                            f"(samples, {IMAGENET_CLASSES}), got {tuple(probabilities.shape)}")
        if not isinstance(n, int) or not 1 <= n <= IMAGENET_CLASSES:
            raise UserError(f"n must be between 1 and {IMAGENET_CLASSES}, got {n!r}")
        sums = probabilities.sum(dim=1)
        if (probabilities < 0).any() or not torch.allclose(sums, torch.ones_like(sums), atol=_PROBABILITY_TOLERANCE):
            raise UserError("pick_n_best takes probabilities (rows summing to 1), and these look like logits: "
                            "pass torch.nn.functional.softmax(output, dim=1)")
        classes = ConvNetsProcessing.get_imgnet_classes()
        best = probabilities.topk(n, dim=1)
        results = []
        for sample, (values, indices) in enumerate(zip(best.values.tolist(), best.indices.tolist())):
            row = [(classes[i], f"{100 * v:.1f}%") for v, i in zip(values, indices)]
            print(f"sample {sample}: {row}")
            results.append(row)
        return results

    @staticmethod
    def get_imgnet_classes() -> list[str]:
        """ImageNet-1k's class names in index order (shipped with torchvision; nothing is downloaded)."""
        return imagenet_class_names()
