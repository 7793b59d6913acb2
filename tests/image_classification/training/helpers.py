"""Small, fast training runs on the digits data through the real CLI parser."""
import os

import torch

from efficientnet.main import build_parser, config_from_args
from image_classification.training.trainer import train

FAST = ("--image-size 32 -b 16 --prof 4 --lr 0.05 --lr-schedule cosine --warmup 0.5 --print-freq 2 --seed 3 "
        "--no-progress --bn_momentum 0.1").split()


def config(data, workspace, *extra):
    argv = [str(data), "--workspace", str(workspace), *FAST, *map(str, extra)]
    return config_from_args(build_parser().parse_args(argv))


def run(data, workspace, *extra) -> dict:
    return train(config(data, workspace, *extra))


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def max_weight_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def signal_at_step(monkeypatch, signum: int, step: int, times: int = 1) -> None:
    """Send this process `signum` (`times` times) as the run's `step`-th training step (0-based) begins: the way a
    scheduler's signal lands in the middle of a step."""
    from image_classification.training.step import TrainingStep

    original = TrainingStep.__call__
    calls = [0]

    def signal_then_step(self, *args, **kwargs):
        if calls[0] == step:
            for _ in range(times):
                os.kill(os.getpid(), signum)
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TrainingStep, "__call__", signal_then_step)
