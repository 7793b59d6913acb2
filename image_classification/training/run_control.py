"""What the outside world asks of a running job: stop (and save), or save and go on.

Schedulers stop jobs with signals sent to the whole process group: SLURM's scancel and time limit, Kubernetes and
GNU `timeout` send SIGTERM, a terminal sends SIGINT, and `sbatch --signal=USR1@120` warns two minutes ahead with
SIGUSR1. The handlers here only record the request; the training loop acts on it between steps, where the state is
consistent: it finishes the step in flight, saves, and exits with EXIT_RESUMABLE. Data-loading workers ignore these
signals (data.workers.ignore_stop_signals), so the group signal cannot kill them under the main process first.
"""
from __future__ import annotations

import signal

import torch

from ..runtime import distributed


class StopSignals:
    """Records SIGTERM, SIGINT and SIGUSR1 while the training loop runs; restores the previous handlers after.

    A second SIGINT (Ctrl-C pressed again) interrupts at once, for a user who does not want to wait for the save.
    `usr1` is "stop" (save and exit, like SIGTERM) or "checkpoint" (save and continue).
    """

    def __init__(self, usr1: str = "stop"):
        self.usr1 = usr1
        self.stop_by: str | None = None  # the signal's name once a stop was asked for
        self.checkpoint_asked = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        wanted = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else [])
        for signum in wanted:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread (a test harness, a notebook's worker): leave signals alone
                break
        return self

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if signum == getattr(signal, "SIGUSR1", None) and self.usr1 == "checkpoint":
            self.checkpoint_asked = True
            return
        if signum == signal.SIGINT and self.stop_by == "SIGINT":
            raise KeyboardInterrupt
        if self.stop_by is None:
            self.stop_by = name

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


class Requests:
    """What every rank agreed to do after a step (DDP ranks must stop, or save, at the same step)."""

    def __init__(self, stop_by: str | None = None, checkpoint: bool = False):
        self.stop_by, self.checkpoint = stop_by, checkpoint

    def __bool__(self) -> bool:
        return self.stop_by is not None or self.checkpoint


SIGNAL_NAMES = ("SIGTERM", "SIGINT", "SIGUSR1")


def agree(signals: StopSignals, device: torch.device, several_ranks: bool) -> Requests:
    """The requests of all ranks: a stop or checkpoint that one rank received applies to all. One small all-reduce
    under DDP; callers ask only every few steps, since it waits for the step's GPU work."""
    if not several_ranks:
        requests = Requests(signals.stop_by, signals.checkpoint_asked)
    else:
        # [which signal stopped (index + 1, 0: none), checkpoint asked]
        code = SIGNAL_NAMES.index(signals.stop_by) + 1 if signals.stop_by else 0
        flags = torch.tensor([float(code), 1.0 if signals.checkpoint_asked else 0.0], device=device)
        flags = distributed.all_reduce_max(flags).tolist()
        requests = Requests(SIGNAL_NAMES[int(flags[0]) - 1] if flags[0] else None, bool(flags[1]))
        if requests.stop_by and not signals.stop_by:
            signals.stop_by = requests.stop_by  # the other ranks' signal: later checks agree without asking
    signals.checkpoint_asked = False  # served: a later SIGUSR1 asks again
    return requests
