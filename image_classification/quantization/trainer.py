"""QAT is the project's Trainer on a fake-quantized model; this subclass only makes its checkpoints quantized ones."""
from __future__ import annotations

from common.cli_errors import UserError
from image_classification.models.checkpoint import QUANTIZATION_KEY
from image_classification.training.trainer import Trainer

from .state import is_quantized_model, make_record, restore_quantizers


class QuantTrainer(Trainer):
    """Training, validation, EMA, DDP, AMP and resume as for any model; gradients pass the quantizers straight
    through (modelopt's STE), so the weights learn to live with the INT8 ranges.

    The model arrives quantized: `cfg.pretrained_from_file` names a quantized checkpoint (the calibrated one, or an
    earlier QAT run's), and creating the model from it restores its quantizers. Every checkpoint written adds the
    quantizer state, so it loads the same way again.
    """

    def __init__(self, cfg):
        super().__init__(cfg, restore_quantizers=restore_quantizers)
        if not is_quantized_model(self.model):
            raise UserError(f"{cfg.pretrained_from_file or 'the starting weights'} holds no quantizer state: QAT "
                            f"starts from a calibrated checkpoint (quant_main.py writes one from FP32 weights)")
        if self.device.type == "cuda":
            from .backend import load_cuda_kernels

            load_cuda_kernels()

    def extra_checkpoint_state(self, epoch: int) -> dict:
        details = dict(getattr(self.model, "quantization", {}))
        details["qat_epochs"] = epoch
        return {QUANTIZATION_KEY: make_record(self.model, **details)}
