"""Fixtures the data-backend tests share."""
import shutil

import pytest


@pytest.fixture()
def corrupt_root(tmp_path, digits_root):
    """The digits with three unreadable training images: an empty file, a non-JPEG and a truncated JPEG."""
    root = tmp_path / "d"
    shutil.copytree(digits_root, root)
    (root / "train" / "3" / "empty.jpg").write_bytes(b"")
    (root / "train" / "5" / "garbage.jpg").write_bytes(b"this is not a jpeg")
    good = next((root / "train" / "7").glob("*.jpg")).read_bytes()
    (root / "train" / "7" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    return root
