"""What every data backend returns, and the checks they share: the split folders, the class lists of train and
val, the class count against the model's. Below the factory (loader.py) and the backends it picks (dali.py,
gpu_decode.py), so none of them imports another."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli_errors import UserError


@dataclass
class DataBundle:
    train: object | None
    val: object | None
    num_classes: int
    class_names: list[str] | None


def split_folder(root: Path, split: str) -> Path:
    path = root / split
    if not path.is_dir() and split == "validation" and (root / "val").is_dir():
        path = root / "val"  # timm's default split name, on the usual folder layout
    if not path.is_dir():
        raise UserError(f"{path} not found: the data folder must hold train/ and val/ ImageFolders "
                        f"(python -m common.datasets.digits writes one)")
    return path


def check_val_classes(train_classes, val_classes) -> list:
    """The classes of a run: validation's folders must name the same classes as training's, when both are loaded."""
    if train_classes is not None and val_classes != train_classes:
        only_train = sorted(set(train_classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train_classes))
        raise UserError(f"train/ and val/ class folders differ (only in train: {only_train[:5]}, "
                        f"only in val: {only_val[:5]})")
    return train_classes or val_classes


def checked_bundle(root, train, val, classes, *, num_classes: int | None, flag) -> DataBundle:
    """Every backend's result, after the check of the class count the model expects (None: any)."""
    if num_classes is not None and num_classes != len(classes):
        named = flag("num_classes")
        raise UserError(f"{root} has {len(classes)} classes but {named} is {num_classes}: "
                        f"pass {named} {len(classes)} (or leave it out to use the data's count)")
    return DataBundle(train, val, len(classes), list(classes))


def warn_if_topk_covers_every_class(topk: int, num_classes: int, root, flag: str) -> None:
    """Top-k of k >= the class count is 100% whatever the model does. Warned, not refused: the default k (5) meets
    small data sets that the user never asked a top-k of. `flag`: the top-k flag as the user's tool spells it."""
    if topk <= num_classes or os.environ.get("RANK", "0") != "0":  # one line per run, not one per process
        return
    print(f"warning: {flag} {topk} is more than the {num_classes} classes in {root}: every image will count as a "
          f"top-{topk} hit", file=sys.stderr, flush=True)
