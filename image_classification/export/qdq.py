"""A quantized model's ONNX export: the Q/DQ nodes it must carry, how close onnxruntime must come, the INT8 engine.

modelopt's quantizers export (with the TorchScript exporter) as QuantizeLinear/DequantizeLinear pairs, which is
what TensorRT's explicit quantization reads: a quantized export without them would silently build an FP16 engine.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from common.cli_errors import UserError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
ENGINE_CHOICES = ("auto", "on", "off")
# onnxruntime and PyTorch compute the float parts (SiLU, sigmoid, BatchNorm, convolution sums) a little differently;
# now and then a value within float error of an INT8 rounding tie lands in the neighbouring step, and that step
# cascades through the quantizers after it. Measured on the digits models (random inputs): 70-95% of the inputs
# match to 1e-6, the others move by up to 15% of the output range (30% once), always with the same top-1. A broken
# export (wrong scales, a wrong axis) differs on every input and loses the top-1, so the check judges the inputs as
# a group: the mean and the worst difference relative to the output range, and how often the top-1 agrees.
QDQ_EXTRA_SAMPLES = 32
QDQ_MEAN_RTOL = 0.1
QDQ_MAX_RTOL = 0.5
QDQ_MIN_TOP1_AGREEMENT = 0.8


def check_qdq_agreement(per_sample: list[float], same_top1: list[bool], scale: float) -> None:
    """`per_sample`: each input's largest |onnxruntime - PyTorch| output difference; `same_top1`: whether their
    top-1 classes agree. Raises VerificationError unless the differences look like rounding ties, not an error."""
    from .errors import VerificationError

    span = max(1.0, scale)
    worst = float("nan") if any(d != d for d in per_sample) else max(per_sample)
    mean = sum(per_sample) / len(per_sample)
    agreement = sum(same_top1) / len(same_top1)
    if not (mean <= QDQ_MEAN_RTOL * span and worst <= QDQ_MAX_RTOL * span  # NaN fails too
            and agreement >= QDQ_MIN_TOP1_AGREEMENT):
        raise VerificationError(
            f"the quantized ONNX model's outputs differ from the fake-quantized PyTorch model's beyond INT8 rounding "
            f"ties: mean difference {mean:.3g} (at most {QDQ_MEAN_RTOL * span:.3g}), worst {worst:.3g} (at most "
            f"{QDQ_MAX_RTOL * span:.3g}), same top-1 on {100 * agreement:.0f}% of the inputs (at least "
            f"{100 * QDQ_MIN_TOP1_AGREEMENT:.0f}%)", worst)


def count_qdq(model_or_bytes) -> dict[str, int]:
    """{"QuantizeLinear": n, "DequantizeLinear": m} over the graph (subgraphs included)."""
    import onnx

    proto = onnx.load_from_string(model_or_bytes) if isinstance(model_or_bytes, bytes) else model_or_bytes
    ops: Counter = Counter()

    def walk(graph):
        for node in graph.node:
            ops[node.op_type] += 1
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)

    walk(proto.graph)
    return {op: ops[op] for op in QDQ_OPS}


def check_qdq(model_or_bytes, source: str = "the export") -> dict[str, int]:
    counts = count_qdq(model_or_bytes)
    if not all(counts.values()):
        raise UserError(f"{source} of a quantized model has {counts['QuantizeLinear']} QuantizeLinear and "
                        f"{counts['DequantizeLinear']} DequantizeLinear nodes: TensorRT would not build it in INT8 "
                        f"(export with the TorchScript exporter, which emits modelopt's Q/DQ)")
    return counts


def build_int8_engine(onnx_path: str | os.PathLike, mode: str = "auto", *, max_batch: int | None = None,
                      log: Callable[[str], None] = print) -> Path | None:
    """An INT8 TensorRT engine from a Q/DQ export, beside it as .plan. mode auto: only where TensorRT and a CUDA
    device are there (otherwise one line says why it is skipped); on: missing either is an error; off: never."""
    if mode not in ENGINE_CHOICES:
        raise UserError(f"the INT8 engine choice must be one of {', '.join(ENGINE_CHOICES)}, got {mode!r}")
    if mode == "off":
        return None
    import torch

    from .tensorrt import DEFAULT_MAX_BATCH, build_engine, import_tensorrt

    try:
        import_tensorrt()
        if not torch.cuda.is_available():
            raise UserError("building a TensorRT engine needs a CUDA GPU, and PyTorch sees none")
    except UserError as exc:
        if mode == "on":
            raise
        log(f"skipping the INT8 TensorRT engine: {exc}")
        return None
    engine = Path(onnx_path).with_suffix(".plan")
    return build_engine(onnx_path, engine, fp16=True, int8=True, max_batch=max_batch or DEFAULT_MAX_BATCH)
