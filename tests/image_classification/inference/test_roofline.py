"""The memory floor: conv/linear traffic counted by hand for a tiny network, priced per precision and batch."""
import pytest
import torch.nn as nn

from image_classification.inference.roofline import Traffic, floor_images_per_s, layer_traffic, roofline_text


class Twice(nn.Module):
    """A 1x1 conv applied twice: its activations move twice, its weights once."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1, bias=False)

    def forward(self, x):
        return self.conv(self.conv(x))


def tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),  # 6x6 kept
        Twice(),
        nn.Conv2d(4, 8, 1), nn.SiLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )


def test_layer_traffic_matches_a_hand_count():
    # At 6x6 (36 pixels): conv 3x3 reads 3*36 and writes 4*36; the twice-applied 1x1 conv reads and writes 4*36
    # two times; the 4->8 1x1 conv reads 4*36 and writes 8*36; the linear reads 8 and writes 10.
    activations = 3 * 36 + 4 * 36 + 4 * (4 * 36) + 4 * 36 + 8 * 36 + 8 + 10
    # Weights: 3*4*9 + 4*4 (once, though called twice) + 4*8 + 8 bias + 8*10 + 10 bias; BatchNorm is not counted.
    weights = 108 + 16 + 32 + 8 + 80 + 10
    model = tiny()
    assert layer_traffic(model, 6) == Traffic(activations, weights)
    assert next(model.parameters()).device.type == "cpu"  # the caller's model stays where it was


def test_bytes_per_image_price_weights_once_per_batch():
    traffic = Traffic(activation_elements=1000, weight_elements=400)
    assert traffic.bytes_per_image("fp16", 1) == 2 * 1400
    assert traffic.bytes_per_image("bf16", 4) == 2 * (1000 + 100)
    assert traffic.bytes_per_image("fp32", 8) == 4 * (1000 + 50)


def test_floor_and_its_line():
    # 27.2 MB an image at 4.3 TB/s: the B0 batch-256 floor, 158k img/s; 41,901 img/s is 27% of it.
    assert floor_images_per_s(27.2e6, 4300) == pytest.approx(158088, rel=1e-4)
    assert roofline_text(41901, 27.2e6, 4300) == "floor 158k img/s at 4.3 TB/s; measured 27%"
    assert roofline_text(50, 1e6, 20) == "floor 20k img/s at 20 GB/s; measured 0.25%"


def test_a_model_without_meta_kernels_is_counted_on_the_cpu():
    class NeedsValues(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return y * float(y.abs().max() >= 0)  # reading a value: impossible on the meta device

    assert layer_traffic(NeedsValues(), 4) == Traffic(3 * 16 + 2 * 16, 6 + 2)
