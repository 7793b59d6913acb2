"""Training checkpoints: written atomically, complete enough to resume a run exactly.

The layout is a superset of upstream ConvNets' (epoch, best_prec1, state_dict, optimizer, state_dict_ema), so
upstream tools read ours and we resume theirs. Added: arch, class names, model metadata, GradScaler state,
schedule position, the position inside an interrupted epoch, every rank's RNG states and the config.
"""
from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from common.atomic_files import atomic_save, atomic_write
from common.cli_errors import UserError

from .config import TIMM_LATEST

FORMAT = "image_classification.checkpoint/1"


class CheckpointWriteError(UserError):
    """A checkpoint could not be written; the files written before are intact."""
EPOCH_FILE = re.compile(r"checkpoint_(\d{4,})\.pth\.tar$")
TIMM_EPOCH_FILE = re.compile(r"checkpoint-(\d+)\.pth\.tar$")
BEST = "model_best.pth.tar"


def atomic_copy(src: Path, dst: Path) -> Path:
    with atomic_write(dst, durable=True) as f, open(src, "rb") as source:
        shutil.copyfileobj(source, f, length=16 << 20)
    return dst


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


class ConvNetsLayout:
    """Upstream ConvNets' files: `checkpoint_<epoch>.pth.tar` (when kept), the `--checkpoint-filename` copy and
    `model_best.pth.tar`.

    keep: how many per-epoch files to keep: N > 0 the last N, -1 all, 0 none (only the last and the best copies).
    Upstream's --gather-checkpoints did the inverse of its help text; this follows the help text.
    """

    def __init__(self, filename: str, keep: int):
        self.filename, self.keep = filename, keep
        self.latest_name = filename

    def epoch_file(self, workspace: Path, finished_epoch: int) -> Path:
        return workspace / f"checkpoint_{finished_epoch + 1:04d}.pth.tar"  # named by the epoch to run next

    def files(self, workspace: Path) -> list[Path]:
        """The checkpoint files of a run in this layout that `workspace` holds."""
        names = {self.filename, BEST}
        return sorted(p for p in workspace.iterdir() if p.name in names or EPOCH_FILE.match(p.name))

    def write(self, state: dict, workspace: Path, *, epoch: int, iteration: int, is_best: bool,
              metric: float | None) -> Path:
        state = {"format": FORMAT, **state}
        # The best first: a kill or a full disk between two writes must never leave a checkpoint that records a
        # best whose file was not written.
        written = atomic_save(state, workspace / BEST) if is_best else None
        if self.keep != 0 and iteration == 0:
            epoch_file = workspace / f"checkpoint_{epoch:04d}.pth.tar"
            written = atomic_copy(written, epoch_file) if written else atomic_save(state, epoch_file)
        last = workspace / self.filename
        if written:
            atomic_copy(written, last)
        else:
            atomic_save(state, last)
        if self.keep > 0:
            numbered = sorted((int(m.group(1)), p) for p in workspace.iterdir() if (m := EPOCH_FILE.match(p.name)))
            for _, old in numbered[:-self.keep]:
                old.unlink(missing_ok=True)
        return last

    keeps_epoch_rows = False  # ConvNets keeps per-epoch figures in the DLLogger report only


class TimmLayout:
    """timm's CheckpointSaver files: last.pth.tar, model_best.pth.tar, and checkpoint-<epoch>.pth.tar for the
    `hist` best epochs by metric (ranked through a small index file, so a resumed run keeps the ranking), plus
    summary.csv, one row per epoch."""

    keeps_epoch_rows = True
    latest_name = TIMM_LATEST

    def __init__(self, hist: int, args: dict):
        self.hist, self.args = hist, args

    def epoch_file(self, workspace: Path, finished_epoch: int) -> Path:
        return workspace / f"checkpoint-{finished_epoch}.pth.tar"

    def files(self, workspace: Path) -> list[Path]:
        names = {"last.pth.tar", BEST, "checkpoint-index.json", "summary.csv"}
        return sorted(p for p in workspace.iterdir() if p.name in names or TIMM_EPOCH_FILE.match(p.name))

    def write(self, state: dict, workspace: Path, *, epoch: int, iteration: int, is_best: bool,
              metric: float | None) -> Path:
        import json

        state = {"format": FORMAT, "version": 2, **state, "args": self.args}
        if state.get("scaler") is not None:
            state["amp_scaler"] = state["scaler"]  # timm's name for it
        # timm names per-epoch files by the epoch just finished (0-based); `epoch` here is the next one; a
        # mid-epoch save ranks nowhere.
        finished = epoch - 1
        metric = metric if iteration == 0 else None
        state["metric"] = metric
        # The best first, as in ConvNetsLayout.write.
        if is_best:
            last = atomic_copy(atomic_save(state, workspace / BEST), workspace / "last.pth.tar")
        else:
            last = atomic_save(state, workspace / "last.pth.tar")
        if self.hist > 0 and metric is not None:
            index_path = workspace / "checkpoint-index.json"
            index = read_checkpoint_index(index_path)
            index[f"checkpoint-{finished}.pth.tar"] = metric
            ranked = sorted(index.items(), key=lambda kv: kv[1], reverse=True)
            keep, drop = dict(ranked[:self.hist]), [name for name, _ in ranked[self.hist:]]
            if f"checkpoint-{finished}.pth.tar" in keep:
                atomic_copy(last, workspace / f"checkpoint-{finished}.pth.tar")
            for name in drop:
                (workspace / name).unlink(missing_ok=True)
            with atomic_write(index_path, "w") as f:
                json.dump(keep, f, indent=1)
        return last

    def epoch_done(self, workspace: Path, row: dict) -> None:
        append_summary_csv(workspace / "summary.csv", row)


def read_checkpoint_index(path: Path) -> dict:
    """TimmLayout's ranking of the kept checkpoints, {file name: metric}. It is read after an epoch: a corrupt
    index must cost the ranking, not the epoch, so it counts as empty, with a warning."""
    import json

    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())
    except ValueError as exc:  # not JSON, or not text
        return _restart_ranking(path, str(exc))
    if not (isinstance(index, dict) and all(isinstance(v, (int, float)) for v in index.values())):
        return _restart_ranking(path, "not a mapping of file names to metrics")
    return index


def _restart_ranking(path: Path, problem: str) -> dict:
    import sys

    print(f"warning: {path} is corrupt ({problem}); the ranking of kept checkpoints starts again from this epoch "
          f"(checkpoint files it listed stay as they are)", file=sys.stderr, flush=True)
    return {}


class CheckpointWriter:
    """Saves the run's state in its layout. Called on every rank (the RNG states of all ranks are gathered into the
    checkpoint, so a resumed DDP run repeats exactly); only the main rank builds the state and writes."""

    def __init__(self, workspace: Path, layout: ConvNetsLayout | TimmLayout, *, is_main: bool, enabled: bool):
        self.workspace, self.layout, self.is_main, self.enabled = workspace, layout, is_main, enabled
        self.last_written: Path | None = None

    @property
    def latest_path(self) -> Path:
        """The file a resume continues from."""
        return self.workspace / self.layout.latest_name

    @classmethod
    def for_config(cls, cfg, is_main: bool) -> CheckpointWriter:
        if cfg.output_style == "timm":
            layout = TimmLayout(cfg.checkpoint_hist, cfg.cli_args or cfg.to_dict())
        else:
            layout = ConvNetsLayout(cfg.checkpoint_filename, cfg.gather_checkpoints)
        return cls(Path(cfg.workspace), layout, is_main=is_main, enabled=cfg.save_checkpoints)

    @property
    def best_path(self) -> Path:
        return self.workspace / BEST

    def existing_files(self) -> list[Path]:
        return self.layout.files(self.workspace) if self.workspace.is_dir() else []

    def restore_best(self, ckpt: dict, source: Path) -> str | None:
        """On resume: the best epoch a checkpoint records must have its file (an older run, or one killed between
        two writes before best-first ordering, could leave it missing). Re-creates it from a checkpoint of that
        epoch where one is left; returns the line to print, if any."""
        best_epoch = int(ckpt.get("best_epoch", -1))
        if not (self.is_main and self.enabled) or best_epoch < 0 or self.best_path.exists():
            return None
        at_epoch_end = not ckpt.get("samples", ckpt.get("iteration", 0))
        candidates = [source] if at_epoch_end and int(ckpt.get("epoch", -1)) == best_epoch + 1 else []
        candidates += [self.layout.epoch_file(folder, best_epoch) for folder in dict.fromkeys(
            (self.workspace, Path(source).parent))]
        for candidate in candidates:
            if candidate.is_file():
                atomic_copy(candidate, self.best_path)
                return f"=> re-created {self.best_path} from {candidate} (best top1 of epoch {best_epoch})"
        return (f"warning: {source} records its best top1 at epoch {best_epoch} but {self.best_path} is missing and "
                f"no checkpoint of that epoch is left; the next new best writes it")

    def save(self, make_state, *, epoch: int, iteration: int, is_best: bool, metric: float | None) -> Path | None:
        """`make_state()` builds the state dict (only where it is written); `epoch` is the next epoch to run."""
        from ..runtime import distributed

        rngs = distributed.gather_objects(rng_state())
        path, error = None, None
        if self.is_main and self.enabled:
            state = make_state()
            state["rng"] = rngs
            if state.get("state_dict_ema") is None:
                state.pop("state_dict_ema", None)
            try:
                self.workspace.mkdir(parents=True, exist_ok=True)
                path = self.layout.write(state, self.workspace, epoch=epoch, iteration=iteration, is_best=is_best,
                                         metric=metric)
            except OSError as exc:  # a full disk, a quota, a read-only or vanished folder
                kept = (f"{self.last_written} is intact" if self.last_written
                        else "no checkpoint of this run was written")
                error = (f"cannot write a checkpoint: {exc.filename or self.workspace}: {exc.strerror or exc}; "
                         f"{kept} (an unfinished write leaves nothing behind)")
        # Every rank stops together, rather than the others waiting for rank 0 until --dist-timeout.
        if distributed.any_rank(error is not None):
            raise CheckpointWriteError(error or "rank 0 could not write a checkpoint (its error says why)")
        if path is not None:
            self.last_written = path
        return path

    def epoch_done(self, make_row) -> None:
        """Per-epoch figures the layout keeps beside the checkpoints (timm's summary.csv); `make_row()` gives them."""
        if self.is_main and self.layout.keeps_epoch_rows:
            self.layout.epoch_done(self.workspace, make_row())


def append_summary_csv(path: Path, row: dict) -> None:
    """timm's summary.csv: one row per epoch, header from the first row; rewritten whole so it is never torn."""
    import csv
    import io

    rows = []
    if path.is_file():
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    rows.append({k: row[k] for k in row})
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path, "w") as f:
        f.write(buffer.getvalue())
