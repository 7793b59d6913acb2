"""Knowledge distillation: a frozen teacher's softened predictions as a second target for the student.

Unlike upstream GPUNet: the teacher's weights come from --teacher-checkpoint (upstream ignored it and downloaded
timm weights), it runs under autocast like the student, the two can see different resolutions (upstream's
two-resolution path was dead code), and the KD term has a temperature and a weight.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.cli_errors import UserError
from image_classification.models import create_model, get_model_info
from image_classification.models.checkpoint import QuantizerRestorer, load_pretrained


def build_teacher(name: str, checkpoint: str | None, num_classes: int, *,
                  restore_quantizers: QuantizerRestorer | None = None) -> nn.Module:
    """The teacher in eval mode with frozen weights: a registered model name first, else a timm model name."""
    if not checkpoint:
        raise UserError("distillation needs the teacher's weights: pass --teacher-checkpoint FILE "
                        "(nothing is downloaded)")
    try:
        info = get_model_info(name)
    except UserError:
        info = None
    if info is not None:
        teacher = create_model(info.name, pretrained=checkpoint, num_classes=num_classes,
                               restore_quantizers=restore_quantizers)
    else:
        import timm

        if not timm.is_model(name):
            raise UserError(f"unknown teacher {name!r}: neither a registered model nor a timm model")
        teacher = timm.create_model(name, pretrained=False, num_classes=num_classes)
        teacher.pretrained_cfg = {**getattr(teacher, "pretrained_cfg", {}), "architecture": name}
        load_pretrained(teacher, checkpoint, restore_quantizers=restore_quantizers)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    channels_last = images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class Resized(nn.Module):
    """Feeds a model at its own resolution from batches of another (to validate a teacher on student batches)."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x):
        return self.model(resize_batch(x, self.size))


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's KL(teacher || student) on temperature-softened outputs, scaled by T^2 so gradients keep their size
    as T changes. It reaches 0 when the student matches the teacher."""
    t = temperature
    log_p = F.log_softmax(student_logits.float() / t, dim=1)
    log_q = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p, log_q, log_target=True, reduction="batchmean") * (t * t)
