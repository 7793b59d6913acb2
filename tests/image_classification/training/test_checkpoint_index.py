"""The timm layout's checkpoint-index.json: a corrupt one costs the ranking, not the epoch just trained."""
import json

import pytest
import torch

from image_classification.training.checkpointing import TimmLayout


def write_epoch(workspace, epoch: int, metric: float, hist: int = 2):
    TimmLayout(hist, {}).write({"state_dict": {"w": torch.zeros(1)}}, workspace, epoch=epoch + 1, iteration=0,
                               is_best=False, metric=metric)


@pytest.mark.parametrize("corrupt", ['{"checkpoint-0.pth.tar": 50.0', '["checkpoint-0.pth.tar"]',
                                     '{"checkpoint-0.pth.tar": "high"}', "\udcff"])
def test_a_corrupt_index_is_warned_and_the_epoch_kept(corrupt, tmp_path, capsys):
    write_epoch(tmp_path, 0, 50.0)
    index = tmp_path / "checkpoint-index.json"
    index.write_bytes(corrupt.encode("utf-8", "surrogateescape"))
    capsys.readouterr()
    write_epoch(tmp_path, 1, 40.0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {index} is corrupt ("), err
    assert "ranking of kept checkpoints starts again" in err[0]
    assert json.loads(index.read_text()) == {"checkpoint-1.pth.tar": 40.0}
    assert (tmp_path / "checkpoint-1.pth.tar").is_file() and (tmp_path / "last.pth.tar").is_file()
    assert (tmp_path / "checkpoint-0.pth.tar").is_file()  # no longer ranked, and not deleted


def test_a_sound_index_keeps_the_best(tmp_path, capsys):
    for epoch, metric in enumerate([50.0, 70.0, 60.0]):
        write_epoch(tmp_path, epoch, metric)
    assert capsys.readouterr().err == ""
    assert json.loads((tmp_path / "checkpoint-index.json").read_text()) == {"checkpoint-1.pth.tar": 70.0,
                                                                           "checkpoint-2.pth.tar": 60.0}
    assert not (tmp_path / "checkpoint-0.pth.tar").exists()
