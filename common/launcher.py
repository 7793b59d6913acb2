"""multiproc.py's flags, carried out by torchrun (torch.distributed.run): one process per GPU, one place that
knows how to start them. Upstream's hand-written launcher set env vars and spawned processes itself."""
from __future__ import annotations

import argparse

from common.cli_errors import ArgumentParser, UserError


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        description="Start one training process per GPU (a thin wrapper over torchrun, with upstream's flags).",
        epilog="Example: python multiproc.py --nproc_per_node 8 launch.py --model efficientnet-b0 ... /imagenet",
    )
    p.add_argument("--nnodes", type=int, default=1, help="number of nodes")
    p.add_argument("--node_rank", type=int, default=0, help="rank of this node")
    p.add_argument("--nproc_per_node", type=int, default=1, help="processes (GPUs) on this node")
    p.add_argument("--master_addr", default="127.0.0.1", help="address of the rank-0 node")
    p.add_argument("--master_port", type=int, default=29500, help="free port on the rank-0 node")
    p.add_argument("--log_dir", default=None,
                   help="also write each rank's output to files here (upstream wrote GPU_<rank>.log)")
    p.add_argument("--all_ranks_to_console", action="store_true",
                   help="show every rank's output (default: rank 0 only, as upstream)")
    p.add_argument("script", help="the training script")
    p.add_argument("script_args", nargs=argparse.REMAINDER, help="its arguments")
    return p


def torchrun_argv(args: argparse.Namespace) -> list[str]:
    if args.nproc_per_node < 1 or args.nnodes < 1:
        raise UserError("--nproc_per_node and --nnodes must be at least 1")
    argv = [
        f"--nnodes={args.nnodes}", f"--node_rank={args.node_rank}", f"--nproc_per_node={args.nproc_per_node}",
        f"--master_addr={args.master_addr}", f"--master_port={args.master_port}",
    ]
    if not args.all_ranks_to_console:
        argv.append("--local-ranks-filter=0")
    if args.log_dir:
        argv += [f"--log-dir={args.log_dir}", "--tee=3"]
    return argv + [args.script, *args.script_args]


def main(argv=None) -> int:
    """Runs torchrun and exits with rank 0's status (75 when a signal stopped the run after it saved, so a job script
    can requeue it): torchrun itself answers 1, with a traceback, whenever a rank fails or it is signalled."""
    import os
    import signal
    import tempfile

    args = build_parser().parse_args(argv)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    from common.cli_errors import EXIT_STATUS_FILE_ENV

    # SLURM's warning (--signal=USR1@N) reaches every process of the step: the training processes act on it, and
    # torchrun's agent, which has no handler, would otherwise die of it and orphan them.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    fd, status_file = tempfile.mkstemp(prefix="multiproc-status-", suffix=".txt")
    os.close(fd)
    os.environ[EXIT_STATUS_FILE_ENV] = status_file
    try:
        try:
            torchrun(torchrun_argv(args))
            return 0
        except (ChildFailedError, SignalException) as exc:
            status = _rank0_status(status_file)
            if status is not None:
                return status
            if isinstance(exc, SignalException):
                raise UserError(f"stopped by signal {exc.sigval.name} before the training processes said how they "
                                f"ended") from None
            raise UserError(f"a training process failed: {_first_failure(exc)}") from None
    finally:
        os.environ.pop(EXIT_STATUS_FILE_ENV, None)
        os.unlink(status_file)


def _rank0_status(path: str) -> int | None:
    try:
        text = open(path).read().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def _first_failure(exc) -> str:
    failures = getattr(exc, "failures", {}) or {}
    for rank, failure in sorted(failures.items()):
        return f"rank {rank} exited with status {failure.exitcode} (its own output says why)"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
