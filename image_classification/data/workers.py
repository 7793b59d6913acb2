"""What every data-loading worker process does first."""
from __future__ import annotations

import signal

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name))


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """DataLoader `worker_init_fn`: a scheduler's SIGTERM (SLURM, Kubernetes, `timeout`), Ctrl-C's SIGINT and SLURM's
    SIGUSR1 warning go to the whole process group. A worker killed by them takes the run down (the main process
    raises "DataLoader worker ... killed by signal") before it can save; the main process handles them and shuts its
    workers down itself, and a worker whose main process died exits on its own (DataLoader's watchdog)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
