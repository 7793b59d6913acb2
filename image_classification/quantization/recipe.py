"""What gets quantized, and how it is calibrated: the INT8 recipe TensorRT's explicit quantization wants.

- weights: symmetric INT8 per output channel (axis 0), calibrated by their max, as TensorRT's INT8 convolutions use;
- activations: symmetric INT8 per tensor at the inputs of convolutions, linear layers, pooling, both inputs of the SE
  multiply and the skip input of the residual add, calibrated by `max` or by `histogram` (a percentile of the
  collected histogram, upstream's default: 99.99);
- BatchNorm stays unquantized: TensorRT folds it into the convolution before it, and quantizers between the two
  would only block that fusion (modelopt's own INT8 recipe turns them off the same way).
"""
from __future__ import annotations

CALIB_METHODS = ("max", "histogram")
DEFAULT_CALIB_METHOD = "histogram"  # upstream's quant_main.py: select_default_calib_method("histogram")
DEFAULT_PERCENTILE = 99.99  # upstream's compute_amax(method="percentile", percentile=99.99)
DEFAULT_CALIB_BATCHES = 10  # upstream's quant_main.py calibrated on 10 batches

ACTIVATION_QUANTIZERS = ("*input_quantizer", "*mul_a_quantizer", "*mul_b_quantizer", "*residual_quantizer")


def is_weight_quantizer(name: str) -> bool:
    return name.endswith("weight_quantizer")


def quant_config(method: str) -> dict:
    """modelopt's quantize config for `method` (max | histogram). Calibration itself is ours (`calibrate.py`), so the
    config asks modelopt only to insert the quantizers (algorithm None)."""
    if method not in CALIB_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIB_METHODS)}, got {method!r}")
    activation = {"num_bits": 8, "axis": None, "calibrator": method}
    entries = [{"quantizer_name": "*", "enable": False}]
    entries.append({"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8, "axis": 0, "calibrator": "max"}})
    entries += [{"quantizer_name": pattern, "cfg": dict(activation)} for pattern in ACTIVATION_QUANTIZERS]
    entries += [{"quantizer_name": "*", "parent_class": f"nn.BatchNorm{d}d", "enable": False} for d in (1, 2, 3)]
    return {"quant_cfg": entries, "algorithm": None}
