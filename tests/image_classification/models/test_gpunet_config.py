"""GPUNet architecture descriptions: upstream's JSON files build the registered networks, and bad JSON fails in one
line that names the file, the entry and the key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from common.cli_errors import UserError
from image_classification.models import create_model
from image_classification.models.gpunet import build_gpunet
from image_classification.models.gpunet_archs import ARCHS
from image_classification.models.gpunet_config import load_upstream_config, parse_table

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
CONFIGS = SHARED / "reference/gpunet-configs"
NAMES = list(ARCHS)


def upstream_json(name: str) -> Path:
    if not CONFIGS.is_dir():
        pytest.skip(f"upstream GPUNet configs not available: {CONFIGS} does not exist")
    return CONFIGS / f"{ARCHS[name].latency_key}.json"


def perturb_(model) -> None:
    """Non-trivial weights and BN statistics, so every parameter and buffer matters to the output."""
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=g) + 0.5)
            elif key.endswith("running_mean") or (key.endswith("bias") and ".bn" in key):
                value.copy_(torch.randn(value.shape, generator=g) * 0.1)
            elif key.endswith("weight") and ".bn" in key:
                value.copy_(torch.rand(value.shape, generator=g) + 0.5)


# --- upstream JSON builds the registered networks -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_json_builds_the_registered_network(name):
    path = upstream_json(name)
    torch.manual_seed(0)
    registered = create_model(name).eval()
    from_json = create_model(name, model_config=path).eval()
    assert [(k, v.shape) for k, v in from_json.state_dict().items()] == [
        (k, v.shape) for k, v in registered.state_dict().items()
    ]
    assert from_json.upstream_key_map() == registered.upstream_key_map()
    perturb_(registered)
    from_json.load_state_dict(registered.state_dict())
    x = torch.randn(2, 3, 72, 72, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = registered(x)
        assert torch.equal(from_json(x), expected)


@pytest.mark.parametrize("name", NAMES)
def test_json_and_table_give_the_same_spec(name):
    spec = load_upstream_config(upstream_json(name))
    assert spec == ARCHS[name].to_spec()
    assert spec.resolution == ARCHS[name].resolution
    # Our export is loadable again and means the same network.
    assert load_upstream_config(spec.to_upstream()) == spec
    assert load_upstream_config(ARCHS[name].to_upstream()) == spec


def test_real_2_25ms_d_file_with_its_stage_typo_loads():
    path = upstream_json("gpunet-d2")
    raw = json.loads(path.read_text())
    assert "stage:" in raw[-1], "the upstream file no longer has its typo; this test documents it"
    spec = load_upstream_config(path)
    assert spec.tail.num_classes == 1000 and spec.head.kind == "head_large"


def test_model_config_as_list_and_num_classes_kwarg_wins():
    config = ARCHS["gpunet-1"].to_upstream(num_classes=7)
    assert config[-1]["num_classes"] == 7
    assert build_gpunet(config).get_classifier().out_features == 7
    assert build_gpunet(config, num_classes=3).get_classifier().out_features == 3
    model = create_model("gpunet-0", num_classes=5, model_config=config)
    assert model.get_classifier().out_features == 5
    assert model.stem.conv.out_channels == 24  # GPUNet-1's stem, not GPUNet-0's


def test_table_parser():
    rows = parse_table("""
        type  out  k  s  exp   act   se  stage   # header
        head   16  -  -  -     relu  -   -
        irb    16  3  1  2.5   relu  se  1       # comment
        tail   64  -  -  -     -     -   -
    """)
    assert rows[1] == {"type": "irb", "out": 16, "k": 3, "s": 1, "exp": 2.5, "act": "relu", "se": True, "stage": 1}
    assert rows[0]["k"] is None and rows[2]["type"] == "tail"
    with pytest.raises(ValueError):
        parse_table("type out\nirb 16 3")
    with pytest.raises(ValueError):
        parse_table("type out kernel\nirb 16 3")


# --- one-line errors for bad JSON ----------------------------------------------------------------------------------


def plain_config() -> list[dict]:
    """A fresh, valid plain-family config (GPUNet-0) as upstream's list."""
    return ARCHS["gpunet-0"].to_upstream()


def distill_config() -> list[dict]:
    """A fresh, valid distill-family config (GPUNet-D1) as upstream's list."""
    return ARCHS["gpunet-d1"].to_upstream()


@pytest.fixture
def good():
    return plain_config(), distill_config()


def write(tmp_path: Path, config, name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def error(path_or_list, *fragments: str) -> str:
    with pytest.raises(UserError) as err:
        load_upstream_config(path_or_list)
    msg = str(err.value)
    assert msg and "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


def test_good_configs_load(tmp_path, good):
    plain, distill = good
    assert load_upstream_config(write(tmp_path, plain, "plain.json")).distill is False
    assert load_upstream_config(write(tmp_path, distill, "distill.json")).distill is True


def test_not_json(tmp_path):
    path = write(tmp_path, '[{"layer_type": "data", "img_resolution": 224,}]')
    error(path, str(path), "not valid JSON", "line 1")


def test_missing_file(tmp_path):
    error(tmp_path / "nope.json", "nope.json", "not found")


@pytest.mark.parametrize("config, what", [({"layer_type": "data"}, "an object"), ("[]", "empty"), ('"x"', "a string")])
def test_not_a_list(tmp_path, config, what):
    path = write(tmp_path, json.dumps(config) if isinstance(config, dict) else config)
    error(path, str(path), what)


def test_first_entry_not_data(tmp_path, good):
    plain, _ = good
    path = write(tmp_path, plain[1:])
    error(path, str(path), "entry 0", "data", "'head'")


def test_entry_not_an_object(tmp_path, good):
    plain, _ = good
    plain[4] = ["irb"]
    error(write(tmp_path, plain), "entry 4", "a list")


def test_unknown_layer_type(tmp_path, good):
    plain, _ = good
    plain[5]["layer_type"] = "fused_ibr"
    error(write(tmp_path, plain), "bad.json", "entry 5", "unknown layer_type 'fused_ibr'", "did you mean 'fused_irb'")


def test_layer_type_of_the_other_family(tmp_path, good):
    plain, distill = good
    plain[1]["layer_type"] = "head_large"
    error(write(tmp_path, plain), "entry 1", "'head_large' needs distill true")
    distill[3] = {**plain[2]}
    error(write(tmp_path, distill, "d.json"), "d.json", "entry 3", "'conv' needs distill false")


def test_structure(tmp_path, good):
    plain, _ = good
    error(write(tmp_path, plain[:-1]), "entry 13", "last entry must be the tail")
    moved = plain[:5] + [plain[-1]] + plain[5:-1]
    error(write(tmp_path, moved, "m.json"), "entry 5", "tail must be the last")
    twice = plain[:1] + plain[:-1] + plain[-1:]
    error(write(tmp_path, twice, "t.json"), "entry 1", "second data entry")
    headless = plain[:1] + plain[2:]
    error(write(tmp_path, headless, "h.json"), "entry 1 (conv)", "must be the head")
    two_heads = plain[:3] + [plain[1]] + plain[3:]
    error(write(tmp_path, two_heads, "hh.json"), "entry 3 (head)", "a second head")


@pytest.mark.parametrize("entry, key", [(0, "distill"), (1, "num_out_channels"), (5, "stride"), (9, "use_se"),
                                        (14, "num_classes"), (3, "layer_type")])
def test_missing_key(tmp_path, good, entry, key):
    plain, _ = good
    del plain[entry][key]
    error(write(tmp_path, plain), "bad.json", f"entry {entry}", f"missing key '{key}'")


def test_missing_distill_key(tmp_path, good):
    _, distill = good
    del distill[7]["groups"]
    error(write(tmp_path, distill), "entry 7 (irb)", "missing key 'groups'")


def test_misspelt_key(tmp_path, good):
    plain, _ = good
    plain[6]["kernal_size"] = plain[6].pop("kernel_size")
    error(write(tmp_path, plain), "bad.json", "entry 6 (fused_irb)", "unknown key 'kernal_size'",
          "did you mean 'kernel_size'")


def test_unknown_key(tmp_path, good):
    plain, distill = good
    plain[10]["dilation"] = 2
    error(write(tmp_path, plain), "entry 10 (irb)", "unknown key 'dilation'")
    # The tail's activation is fixed (ReLU) upstream; a key that would be silently ignored is an error here.
    plain = plain_config()
    plain[-1]["act"] = "swish"
    error(write(tmp_path, plain, "t.json"), "entry 14 (tail)", "unknown key 'act'")
    distill[1]["act"] = "swish"
    error(write(tmp_path, distill, "d.json"), "entry 1 (head)", "unknown key 'act'")


def test_only_the_known_stage_typo_is_forgiven(tmp_path, good):
    plain, _ = good
    plain[-1]["stage:"] = 5
    assert load_upstream_config(write(tmp_path, plain)).tail.num_classes == 1000
    plain[4]["stage:"] = plain[4].pop("stage")
    assert load_upstream_config(write(tmp_path, plain, "b.json")).layers[3].stage == 2
    plain[4]["stages"] = plain[4].pop("stage:")
    error(write(tmp_path, plain, "c.json"), "entry 4", "unknown key 'stages'", "did you mean 'stage'")
    plain[4]["stage"] = 2
    plain[4]["stage:"] = plain[4].pop("stages")
    error(write(tmp_path, plain, "d.json"), "entry 4", "'stage' given twice")


@pytest.mark.parametrize(
    "entry, key, value, fragment",
    [
        (2, "num_out_channels", 0, "'num_out_channels' must be a positive integer, got 0"),
        (1, "num_in_channels", -3, "'num_in_channels' must be a positive integer, got -3"),
        (6, "num_out_channels", 64.0, "must be a positive integer, got 64.0"),
        (14, "num_classes", 0, "'num_classes' must be a positive integer"),
        (9, "stride", 3, "'stride' must be 1 or 2, got 3"),
        (9, "stride", "2", "'stride' must be 1 or 2, got '2'"),
        (9, "act", "gelu", "unknown 'act' 'gelu'"),
        (1, "act", "hswish", "unknown 'act' 'hswish'"),
        (9, "use_se", "false", "'use_se' must be true or false, got 'false'"),
        (9, "use_se", 0, "'use_se' must be true or false, got 0"),
        (0, "distill", "false", "'distill' must be true or false, got 'false'"),
        (0, "img_resolution", 0, "'img_resolution' must be a positive integer"),
        (9, "expansion", 0, "'expansion' must be a positive number"),
        (9, "expansion", float("nan"), "'expansion' must be a positive number"),
        (9, "kernel_size", 0, "'kernel_size' must be a positive integer"),
        (9, "stage", -1, "'stage' must be a non-negative integer"),
    ],
)
def test_bad_values(tmp_path, good, entry, key, value, fragment):
    plain, _ = good
    plain[entry][key] = value
    if key == "num_out_channels":  # keep the next entry consistent, so only the value itself is wrong
        plain[entry + 1]["num_in_channels"] = value
    error(write(tmp_path, plain), "bad.json", f"entry {entry}", fragment)


def test_bad_distill_values(tmp_path, good):
    _, distill = good
    distill[4]["expansion"] = 2.5
    error(write(tmp_path, distill), "entry 4 (irb)", "'expansion' must be a positive integer")
    distill = distill_config()
    distill[4]["groups"] = 4  # 44 channels are divisible by 4, 44 out too: valid
    load_upstream_config(write(tmp_path, distill, "ok.json"))
    distill[4]["groups"] = 3
    error(write(tmp_path, distill, "g.json"), "entry 4 (irb)", "not divisible by 'groups' 3")
    distill = distill_config()
    distill[4]["layer_type"] = "fused_irb"
    distill[4]["groups"] = 2
    error(write(tmp_path, distill, "f.json"), "entry 4 (fused_irb)", "'groups' must be 1")


def test_channel_mismatch(tmp_path, good):
    plain, _ = good
    plain[7]["num_in_channels"] = 48
    error(write(tmp_path, plain), "bad.json", "entry 7 (fused_irb)", "'num_in_channels' is 48",
          "previous entry's num_out_channels is 64")


def test_errors_from_a_list_name_the_source(good):
    plain, _ = good
    plain[3]["stride"] = 4
    error(plain, "GPUNet config", "entry 3")
    with pytest.raises(UserError, match="my.json: entry 3"):
        load_upstream_config(plain, source="my.json")


def test_create_model_reports_bad_model_config(tmp_path, good):
    plain, _ = good
    plain[9]["act"] = "mish"
    with pytest.raises(UserError, match=r"bad\.json: entry 9 \(irb\): unknown 'act' 'mish'"):
        create_model("gpunet-0", model_config=write(tmp_path, plain))


def test_distill_fused_irb_builds(good):
    """No shipped config uses upstream's distill Fused_IRB; check it builds with its documented shapes."""
    _, distill = good
    distill[4]["layer_type"] = "fused_irb"  # 44 -> 44, k5, s1, expansion 4
    model = build_gpunet(distill).eval()
    block = model.blocks[2]  # JSON entry 4: data and head come first
    assert block.conv_exp.weight.shape == (176, 44, 5, 5) and block.conv_exp.padding == (2, 2)
    assert block.bn1.eps == 1e-3 and block.residual_add is not None
    names = dict(model.upstream_key_map())
    # upstream numbers its modules by 1-based JSON position: entry 4 is 'fused_irb5'
    assert names["blocks.2.conv_exp.weight"] == "network.stage: 1 fused_irb5.body.0.weight"
    assert names["blocks.2.bn2.running_var"] == "network.stage: 1 fused_irb5.body.4.running_var"
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
