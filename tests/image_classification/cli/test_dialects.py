"""The two CLI dialects fill one TrainingConfig: each names every setting it reaches by the flag its users type."""
import re

import pytest

import efficientnet.main as efficientnet_main
import gpunet.main as gpunet_main
import gpunet.train as timm_train
from image_classification.cli.dialect_gaps import NO_DIALECT, ONE_DIALECT
from image_classification.training.config import TrainingConfig
from tests.image_classification.cli.dialect_probe import NOT_SETTINGS, reach


@pytest.fixture(scope="module")
def convnets():
    """efficientnet/main.py and gpunet/main.py: one dialect, each with its model's flags."""
    reached, cfg = reach(efficientnet_main.config_from_args, efficientnet_main.build_parser(), "/data")
    more, _ = reach(gpunet_main.config_from_args, gpunet_main.build_parser(), "/data")
    for name, flags in more.items():
        reached[name] = reached.get(name, set()) | flags
    return reached, cfg


@pytest.fixture(scope="module")
def timm():
    return reach(timm_train.config_from_args, timm_train.build_parser(), "/data", "--experiment", "probe")


def flags_in(text: str) -> set[str]:
    return set(re.findall(r"-{1,2}[A-Za-z0-9][A-Za-z0-9_-]*|DIR", text))


@pytest.mark.parametrize("dialect", ["convnets", "timm"])
def test_each_setting_is_named_by_a_flag_that_sets_it(dialect, request):
    """What a message calls a setting (TrainingConfig.flag) is a flag of the user's dialect that changes it."""
    reached, cfg = request.getfixturevalue(dialect)
    assert len(reached) > 60, "the probe found too little to judge"
    wrong = {name: (cfg.flag(name.removeprefix("model_kwargs.")), sorted(flags)) for name, flags in reached.items()
             if not flags_in(cfg.flag(name.removeprefix("model_kwargs."))) & flags}
    assert not wrong, f"{dialect}: setting -> (the flag messages name, the flags that set it): {wrong}"


def test_the_settings_one_dialect_or_neither_reaches_are_the_listed_ones(convnets, timm):
    """A setting either has a flag in both dialects or is in dialect_gaps, with the reason; never by accident."""
    def reached(probe):
        return {name for name in probe[0] if not name.startswith("model_kwargs.")}

    by_convnets, by_timm = reached(convnets), reached(timm)
    only = {**{name: "convnets" for name in by_convnets - by_timm}, **{name: "timm" for name in by_timm - by_convnets}}
    assert only == {name: dialect for name, (dialect, _) in ONE_DIALECT.items()}
    settings = set(TrainingConfig().to_dict()) - NOT_SETTINGS - {"model_kwargs"}
    assert settings - by_convnets - by_timm == set(NO_DIALECT)
