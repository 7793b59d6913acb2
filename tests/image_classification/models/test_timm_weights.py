"""timm's efficientnet_bN weights load into our EfficientNet and give timm's logits."""
from __future__ import annotations

import pytest
import torch

from common.cli_errors import UserError
from image_classification.models import create_model
from image_classification.models.checkpoint import load_pretrained
from image_classification.models.timm_weights import convert_timm_efficientnet, is_timm_efficientnet_state_dict

timm = pytest.importorskip("timm")

TIMM_BN_EPS = 1e-5  # timm's efficientnet_* use PyTorch's default; ours defaults to upstream's 1e-3


def randomised_timm(name: str, seed: int = 0) -> torch.nn.Module:
    """A timm model whose BN statistics and affine terms are random too: with timm's init (mean 0, var 1, weight 1,
    bias 0) a mapping that swapped two BN layers of one width would still give equal logits."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def timm_b0():
    return randomised_timm("efficientnet_b0")


@pytest.mark.parametrize("trt", [False, True], ids=["linear-se", "conv-se"])
def test_pretrained_from_file_of_timm_weights_gives_timm_logits(timm_b0, tmp_path, trt):
    path = tmp_path / "efficientnet_b0_timm.pth"
    torch.save(timm_b0.state_dict(), path)
    # create_model(pretrained=path) is what --pretrained-from-file runs; bn_epsilon is --bn_epsilon.
    ours = create_model("efficientnet-b0", pretrained=path, bn_epsilon=TIMM_BN_EPS, trt=trt).eval()
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = timm_b0(x), ours(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert expected.abs().max() > 0.1  # logits of a size where 1e-5 means something


def test_timm_training_checkpoint_with_ddp_prefix_loads(timm_b0, tmp_path):
    """timm's train.py saves {'arch', 'state_dict', 'state_dict_ema'}; DDP adds `module.`; arch efficientnet_b0 is
    our efficientnet-b0's upstream spelling."""
    ema = {f"module.{k}": v + 1 if v.is_floating_point() else v for k, v in timm_b0.state_dict().items()}
    path = tmp_path / "model_best.pth.tar"
    torch.save({"arch": "efficientnet_b0", "epoch": 3, "state_dict": timm_b0.state_dict(), "state_dict_ema": ema},
               path)
    ours = create_model("efficientnet-b0", bn_epsilon=TIMM_BN_EPS)
    meta = load_pretrained(ours, path)
    assert meta["weights_used"] == "state_dict_ema"
    assert torch.equal(ours.stem.conv.weight, timm_b0.conv_stem.weight + 1)
    se = ours.layers[1].block0.se.squeeze.weight
    assert torch.equal(se, timm_b0.blocks[1][0].se.conv_reduce.weight.flatten(1) + 1)


def test_a_larger_size_maps_every_key():
    """B3's width (1.2) and depth (1.4) roundings agree with timm's: every tensor lands in its place."""
    torch.manual_seed(0)
    theirs = timm.create_model("efficientnet_b3", pretrained=False)
    converted = convert_timm_efficientnet(theirs.state_dict(), "efficientnet-b3")
    ours = create_model("efficientnet-b3")
    own = ours.state_dict()
    assert sorted(converted) == sorted(own)
    assert all(converted[k].shape == own[k].shape for k in own)
    ours.load_state_dict(converted)
    assert torch.equal(ours.features.bn.running_var, theirs.bn2.running_var)


@pytest.mark.parametrize("arch", ["efficientnet-widese-b0", "gpunet-0"])
def test_timm_weights_into_another_architecture_is_one_clear_error(timm_b0, tmp_path, arch):
    path = tmp_path / "timm.pth"
    torch.save(timm_b0.state_dict(), path)
    with pytest.raises(UserError, match=f"timm EfficientNet weights .* not {arch}"):
        create_model(arch, pretrained=path)


def test_detection_is_specific():
    assert is_timm_efficientnet_state_dict(timm.create_model("efficientnet_b0").state_dict())
    assert not is_timm_efficientnet_state_dict(create_model("efficientnet-b0").state_dict())
    assert not is_timm_efficientnet_state_dict(create_model("gpunet-0").state_dict())
    assert not is_timm_efficientnet_state_dict(timm.create_model("mobilenetv3_small_050").state_dict())
