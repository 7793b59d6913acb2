import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_digits(digits_root, tmp_path_factory) -> Path:
    """16 training and 8 validation images of each digit (160 and 80): epochs of a few steps, so the fault tests can
    run whole epochs (a --prof cap would make an epoch's length depend on the batch size)."""
    root = tmp_path_factory.mktemp("small") / "digits"
    for split, per_class in (("train", 16), ("val", 8)):
        for class_dir in sorted((digits_root / split).iterdir()):
            target = root / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:per_class]:
                shutil.copy(image, target / image.name)
    return root
