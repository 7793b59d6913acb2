"""Which configuration settings a CLI dialect reaches, and through which flags: found by trying its flags one by one
on a command line, not read from a declaration (which could be wrong the same way as the code)."""
from __future__ import annotations

import argparse
from collections import defaultdict
from unittest import mock

from common.cli_errors import UserError, str2bool
from image_classification.training.config import TrainingConfig

# Values a flag's type alone does not make up: names the parser accepts and the translation does not refuse. Every
# candidate is tried (a value may equal what the model implies, so change nothing).
PROBE_VALUES = {"arch": ["efficientnet-b1"], "model": ["gpunet-1"], "opt": ["adamw", "momentum"],
                "sched": ["cosine"], "compile_options": ["max_autotune=True"], "input_size": ["3 48 48"],
                "remode": ["rand", "pixel"], "mixup_mode": ["pair"], "train_interpolation": ["bicubic", "bilinear"],
                "interpolation": ["bicubic", "bilinear"], "model_config": ["net.json"], "teacher": ["efficientnet-b2"],
                "torchcompile": ["inductor"]}
# Flags that act only together with others, given before them in the probe and in what it is compared with (where
# the dialect has those others).
COMPANIONS = {"amp_dtype": ["--amp"], "model_ema_decay": ["--model-ema"], "enable_distill": ["--teacher", "x"],
              "test_teacher": ["--enable-distill", "--teacher", "x"], "eager": ["--compile"],
              "teacher": ["--enable-distill", "--teacher", "x"], "cooldown_epochs": ["--sched", "cosine"],
              "torchcompile_mode": ["--torchcompile"]}
NOT_SETTINGS = {"cli_args"}  # the command line as parsed (timm's args.yaml): every flag changes it


def probe_values(action: argparse.Action) -> list[list[str]]:
    """Command-line tails that each give the flag of `action` a value other than its default."""
    flag = action.option_strings[-1]
    if action.nargs == 0:
        return [[flag]]
    if action.type is str2bool:
        return [[flag, "false" if action.default else "true"]]
    if action.choices:
        return [[flag, str(c)] for c in action.choices if c != action.default]
    if action.dest in PROBE_VALUES:
        return [[flag, *value.split()] for value in PROBE_VALUES[action.dest]]
    count = action.nargs if isinstance(action.nargs, int) else (2 if action.nargs in ("+", "*") else 1)
    default = action.default[0] if isinstance(action.default, (list, tuple)) and action.default else action.default
    if isinstance(default, bool) or (action.type is None and not isinstance(default, (int, float))):
        value = "x"
    elif isinstance(default, float) or action.type is float:
        value = str((default or 0.0) + 0.5)
    else:
        value = str((default or 1) + 2)
    return [[flag, *[value] * count]]


def settings(config_from_args, parser, argv) -> tuple[dict, TrainingConfig] | None:
    """The settings `argv` gives (model keywords as model_kwargs.NAME), unvalidated: a probe value need not be
    sensible, only different. None where the parser or the translation refuses the command line."""
    try:
        args = parser.parse_args(argv)
        with mock.patch.object(TrainingConfig, "validate", lambda self: self):
            cfg = config_from_args(args)
    except (UserError, SystemExit):
        return None
    values = cfg.to_dict()
    for name in NOT_SETTINGS:
        values.pop(name)
    values.update({f"model_kwargs.{k}": v for k, v in values.pop("model_kwargs").items()})
    return values, cfg


def reach(config_from_args, parser, folder: str, *base: str) -> tuple[dict[str, set[str]], TrainingConfig]:
    """(setting -> the option strings of every flag that changes it, the config of the plain command line)."""
    out = defaultdict(set)

    def compare(before_argv, after_argv, names):
        before = settings(config_from_args, parser, before_argv)
        after = settings(config_from_args, parser, after_argv)
        if before is None or after is None:
            return False
        for name in set(before[0]) | set(after[0]):
            if before[0].get(name, "<absent>") != after[0].get(name, "<absent>"):
                out[name].update(names)
        return True

    compare([folder, *base], [folder + "-other", *base], ["DIR"])
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        for tail in probe_values(action):
            companions = COMPANIONS.get(action.dest, [])
            if not compare([folder, *base, *companions], [folder, *base, *companions, *tail], action.option_strings):
                compare([folder, *base], [folder, *base, *tail], action.option_strings)
    plain = settings(config_from_args, parser, [folder, *base])
    return out, plain[1]
