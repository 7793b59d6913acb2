"""torch.compile's options and its on-disk cache, shared by training, the inference fast path and the exporters."""
import os

from image_classification.runtime.compile_options import (
    FAST_COMPILE_OPTIONS,
    LARGE_BATCH_OPTIONS,
    SMALL_BATCH,
    configure_compile_cache,
    fast_compile_options,
)


def test_compile_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("IMAGE_CLASSIFICATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert configure_compile_cache() == tmp_path / "cache" / "inductor"  # the project's variable wins
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "inductor")
    monkeypatch.delenv("IMAGE_CLASSIFICATION_CACHE")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "users-choice"))
    assert configure_compile_cache() == tmp_path / "users-choice"  # a user's own inductor folder is kept
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert configure_compile_cache() == tmp_path / "xdg" / "image_classification" / "inductor"


def test_fast_compile_options_by_batch_size():
    assert fast_compile_options(1) == FAST_COMPILE_OPTIONS and fast_compile_options(None) == FAST_COMPILE_OPTIONS
    assert fast_compile_options(SMALL_BATCH + 1) == LARGE_BATCH_OPTIONS == {"freezing": True}
    fast_compile_options(1)["freezing"] = False  # callers get a copy
    assert FAST_COMPILE_OPTIONS["freezing"] is True
