"""The seven published GPUNet architectures, one table per model.

Columns (a '-' cell is empty):
  type    head | head_large | conv | irb | fused_irb | tail
  out     output channels (input channels are the previous row's out; 3 for the head)
  k, s    kernel size and stride of the block's spatial conv (head: fixed 3x3 stride 2; tail: 1x1)
  exp     expansion ratio (hidden width = make_divisible(in * exp) in the plain family, in * exp in distill)
  act     relu | swish (plain family; the distill family is all ReLU, and the tail is always ReLU)
  se      'se' for a squeeze-excitation block (plain family)
  groups  groups of the 1x1 convs (distill family)
  stage   stage number; upstream's module (and checkpoint key) names include it

The plain family's stride-2 fused_irb rows keep upstream's VALID padding (see gpunet.py). The tail row's `out` is the
feature width before the classifier; the class count is a builder argument.
"""
from __future__ import annotations

from .gpunet_config import GPUNetArch

GPUNET_0 = GPUNetArch(
    name="gpunet-0", marketing_name="GPUNet-0", latency_key="0.65ms", ngc_id="gpunet_0",
    resolution=320, crop_pct=1.0, distill=False,
    table="""
        type       out   k  s  exp  act    se  stage
        head        32   -  -  -    swish  -   -
        conv        32   3  1  -    relu   -   1
        conv        32   3  1  -    relu   -   1
        fused_irb   32   3  2  5    relu   -   2
        fused_irb   32   3  1  5    relu   -   2
        fused_irb   64   3  2  5    relu   -   3
        fused_irb   64   3  1  5    relu   -   3
        fused_irb   64   3  1  5    relu   -   3
        irb        256   3  2  5    swish  -   4
        irb        256   3  1  5    swish  -   4
        irb        256   3  1  5    swish  -   4
        irb        704   3  2  5    relu   se  6   # upstream skips stage 5 here
        irb        704   3  1  5    relu   se  6
        tail      1280   -  -  -    -      -   -
    """,
)

GPUNET_1 = GPUNetArch(
    name="gpunet-1", marketing_name="GPUNet-1", latency_key="0.85ms", ngc_id="gpunet_1",
    resolution=288, crop_pct=1.0, distill=False,
    table="""
        type       out   k  s  exp  act    se  stage
        head        24   -  -  -    swish  -   -
        conv        24   3  1  -    relu   -   1
        fused_irb   64   3  2  4    swish  -   2
        fused_irb   64   3  1  4    swish  -   2
        fused_irb   96   3  2  4    swish  -   3
        fused_irb   96   3  1  4    swish  -   3
        irb        160   3  2  2    swish  se  4
        irb        288   3  1  5    relu   -   5
        irb        288   3  1  5    relu   -   5
        irb        288   3  1  5    relu   -   5
        irb        288   3  1  5    relu   -   5
        irb        448   3  2  4    relu   se  6
        irb        448   3  1  4    relu   se  6
        irb        448   3  1  4    relu   se  6
        irb        448   3  1  4    relu   se  6
        tail      1280   -  -  -    -      -   -
    """,
)

GPUNET_2 = GPUNetArch(
    name="gpunet-2", marketing_name="GPUNet-2", latency_key="1.75ms", ngc_id="gpunet_2",
    resolution=384, crop_pct=1.0, distill=False,
    table="""
        type       out   k  s  exp  act    se  stage
        head        32   -  -  -    swish  -   -
        conv        32   3  1  -    relu   -   1
        conv        32   3  1  -    relu   -   1
        conv        32   3  1  -    relu   -   1
        fused_irb   32   5  2  6    swish  se  2
        fused_irb  112   3  2  3    swish  -   3
        fused_irb  112   3  1  3    swish  -   3
        fused_irb  112   3  1  3    swish  -   3
        irb        144   3  2  6    swish  -   4
        irb        144   3  1  6    swish  -   4
        irb        144   3  1  6    swish  -   4
        irb        144   3  1  6    swish  -   4
        irb        144   3  1  6    swish  -   4
        irb        144   3  1  6    swish  -   4
        irb        160   5  1  3    relu   -   5
        irb        160   5  1  3    relu   -   5
        irb        160   5  1  3    relu   -   5
        irb        160   5  1  3    relu   -   5
        irb        224   3  2  3    swish  se  6
        irb        224   3  1  3    swish  se  6
        irb        224   3  1  3    swish  se  6
        irb        224   3  1  3    swish  se  6
        irb        224   3  1  3    swish  se  6
        irb        224   3  1  3    swish  se  6
        irb        224   3  1  3    swish  se  6
        irb        224   3  1  3    swish  se  6
        irb        832   5  1  2    relu   -   7
        irb        832   5  1  2    relu   -   7
        irb        832   5  1  2    relu   -   7
        irb        832   5  1  2    relu   -   7
        irb        832   5  1  2    relu   -   7
        irb        832   5  1  2    relu   -   7
        irb        832   5  1  2    relu   -   7
        tail      1280   -  -  -    -      -   -
    """,
)

# P0 and P1 ("-D" latency keys) use the plain module family; they were trained with distillation.
GPUNET_P0 = GPUNetArch(
    name="gpunet-p0", marketing_name="GPUNet-P0", latency_key="0.5ms-D", ngc_id="gpunet_p0",
    resolution=224, crop_pct=0.875, distill=False,
    table="""
        type       out   k  s  exp   act   se  stage
        head        32   -  -  -     relu  -   -
        conv        32   3  1  -     relu  -   1
        conv        32   3  1  -     relu  -   1
        conv        64   3  2  -     relu  -   2
        irb         96   3  2  8     relu  -   3
        irb         96   3  1  7.67  relu  -   3
        irb         96   3  1  7.67  relu  -   3
        irb        256   3  2  7.67  relu  -   4
        irb        256   5  1  4.25  relu  -   4
        irb        256   3  1  4.75  relu  -   4
        irb        704   3  2  8     relu  -   5
        irb        704   5  1  3.82  relu  -   5
        irb        704   3  1  3.36  relu  -   5
        irb        704   3  1  2.55  relu  -   5
        irb        704   3  2  5.73  relu  -   6
        tail      1984   -  -  -     -     -   -
    """,
)

GPUNET_P1 = GPUNetArch(
    name="gpunet-p1", marketing_name="GPUNet-P1", latency_key="0.8ms-D", ngc_id="gpunet_p1",
    resolution=224, crop_pct=0.875, distill=False,
    table="""
        type       out   k  s  exp   act   se  stage
        head        32   -  -  -     relu  -   -
        conv        32   3  1  -     relu  -   1
        conv        32   3  1  -     relu  -   1
        conv        64   5  2  -     relu  -   2
        irb         64   3  1  8     relu  -   2
        irb         64   3  1  8     relu  -   2
        irb         96   5  2  8     relu  -   3
        irb         96   5  1  8     relu  -   3
        irb        256   5  2  8     relu  -   4
        irb        256   5  1  7.5   relu  -   4
        irb        256   3  1  7.88  relu  -   4
        irb        704   5  2  7.88  relu  -   5
        irb        704   5  1  8     relu  -   5
        irb        704   3  1  7.41  relu  -   5
        irb        704   5  1  8     relu  -   5
        irb        704   5  2  7.95  relu  -   6
        tail      1984   -  -  -     -     -   -
    """,
)

GPUNET_D1 = GPUNetArch(
    name="gpunet-d1", marketing_name="GPUNet-D1", latency_key="1.25ms-D", ngc_id="gpunet_d1",
    resolution=456, crop_pct=1.0, distill=True,
    table="""
        type    out   k  s  exp  groups  stage
        head     33   -  -  -    -       0
        irb      33   3  1  1    1       0
        irb      44   3  2  3    1       1
        irb      44   5  1  4    1       1
        irb      44   3  1  3    1       1
        irb      67   5  2  4    1       2
        irb      67   5  1  4    1       2
        irb      67   3  1  6    1       2
        irb      67   5  1  3    1       2
        irb     134   7  2  6    1       3
        irb     134   5  1  6    1       3
        irb     134   3  1  3    1       3
        irb     134   5  1  4    1       3
        irb     190   3  1  6    1       3
        irb     190   5  1  6    1       3
        irb     190   7  1  6    1       3
        irb     190   3  1  4    1       3
        irb     268   3  2  6    1       4
        irb     268   3  1  6    1       4
        irb     268   5  1  6    1       4
        irb     268   3  1  3    1       4
        irb     268   3  1  3    1       4
        irb     268   3  1  3    1       4
        tail   1984   -  -  -    -       -
    """,
)

GPUNET_D2 = GPUNetArch(
    name="gpunet-d2", marketing_name="GPUNet-D2", latency_key="2.25ms-D", ngc_id="gpunet_d2",
    resolution=528, crop_pct=1.0, distill=True,
    table="""
        type        out   k  s  exp  groups  stage
        head_large   48   -  -  -    -       0
        irb          48   3  1  1    1       0
        irb          64   3  2  3    1       1
        irb          64   5  1  4    1       1
        irb          64   3  1  3    1       1
        irb          96   5  2  4    1       2
        irb          96   5  1  4    1       2
        irb          96   3  1  6    1       2
        irb          96   5  1  3    1       2
        irb         192   7  2  6    1       3
        irb         192   5  1  6    1       3
        irb         192   3  1  3    1       3
        irb         192   5  1  4    1       3
        irb         192   5  1  4    1       3
        irb         272   3  1  6    1       3
        irb         272   5  1  6    1       3
        irb         272   7  1  6    1       3
        irb         272   5  1  6    1       3
        irb         272   3  1  4    1       3
        irb         384   3  2  6    1       4
        irb         384   3  1  6    1       4
        irb         384   5  1  6    1       4
        irb         384   3  1  3    1       4
        irb         384   3  1  3    1       4
        irb         384   3  1  3    1       4
        irb         384   3  1  3    1       4
        tail       1984   -  -  -    -       -
    """,
)

ARCHS: dict[str, GPUNetArch] = {
    a.name: a for a in (GPUNET_0, GPUNET_1, GPUNET_2, GPUNET_P0, GPUNET_P1, GPUNET_D1, GPUNET_D2)
}
