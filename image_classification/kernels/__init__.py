"""Hand-written Triton kernels for the MBConv / inverted-residual pattern, registered as `torch.library` custom ops
(`torch.ops.image_classification.*`) so that torch.compile and CUDA graphs wrap them like any other op.

- `depthwise_conv`: NHWC depthwise k x k convolution (k 3 or 5, stride 1 or 2) with the folded-BN bias and the
  activation in its epilogue, and the squeeze-excitation spatial mean produced in the same pass.
- `pointwise_conv`: the 1x1 convolution as a GEMM over N*H*W rows, with an optional per-sample, per-channel scale of
  its input (the excitation gate) in the prologue and bias, activation and residual add in the epilogue.
- `fused_blocks`: inference modules for a BN-folded MBConv / fused-MBConv block built from the two ops.

Triton is imported only when an op runs: the ops need a CUDA device, or Triton's interpreter (TRITON_INTERPRET=1,
set before Triton is first used) on the CPU, which is how CI checks them. `unavailable_reason` says whether they can
run for a device and dtype. Nothing here imports the rest of the core: the model families are mapped onto these
modules by `image_classification.inference.fused_model`.
"""
from .availability import interpreting, unavailable_reason

__all__ = ["interpreting", "unavailable_reason"]
