"""DDP on CPU with gloo: two processes train a few steps and end with identical weights; only rank 0 writes."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, data, workspace, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from image_classification.training.trainer import Trainer
    from tests.image_classification.training.helpers import config

    trainer = Trainer(config(data, workspace, "--epochs", 1, "-j", 0, "--use-ema", 0.9, "--cpu"))
    try:
        summary = trainer.run()
        from image_classification.inference.evaluate import evaluate

        full_val = evaluate(trainer.model, trainer.data.val, device=trainer.device)
        torch.save({"model": trainer.model.state_dict(), "ema": trainer.ema.state_dict(), "summary": summary,
                    "full_val": full_val},
                   os.path.join(out, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_training_keeps_ranks_identical(digits_root, tmp_path):
    workspace, out = tmp_path / "ws", tmp_path / "out"
    out.mkdir()
    mp.start_processes(_worker, args=(2, _free_port(), str(digits_root), str(workspace), str(out)), nprocs=2,
                       start_method="spawn")
    r0 = torch.load(out / "rank0.pt", weights_only=False)
    r1 = torch.load(out / "rank1.pt", weights_only=False)
    initial = torch.load(workspace / "checkpoint.pth.tar", weights_only=True)["state_dict"]
    for key, value in r0["model"].items():
        assert torch.equal(value, r1["model"][key]), key
        assert torch.equal(value, initial[key]), key  # the checkpoint holds what every rank holds
    for key, value in r0["ema"].items():
        assert torch.equal(value, r1["ema"][key]), key
    # Validation is split between ranks with no duplicates: both report the same, global figures.
    for key in ("images", "top1", "top5", "loss"):
        assert r0["summary"]["val"][key] == r1["summary"]["val"][key], key
    assert r0["summary"]["val"]["images"] == 2 * 4 * 16  # --prof 4 batches of 16 on each of 2 ranks
    # The whole val set (359 images, odd on purpose) split over 2 ranks: every image counted exactly once.
    assert r0["full_val"]["images"] == r1["full_val"]["images"] == len(list(digits_root.glob("val/*/*.jpg")))
    assert r0["full_val"]["top1"] == r1["full_val"]["top1"]
    # Only rank 0 writes outputs.
    files = sorted(p.name for p in workspace.iterdir())
    assert files == ["checkpoint.pth.tar", "experiment_raport.json", "model_best.pth.tar", "summary.json"] or \
        files == ["checkpoint.pth.tar", "experiment_raport.json", "summary.json"]
