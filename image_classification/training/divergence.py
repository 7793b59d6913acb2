"""A run whose loss stays NaN or inf has diverged: stop it before it writes NaN weights over its checkpoints.

One non-finite step is normal under fp16 AMP (the GradScaler skips it and lowers its scale), so only a streak of
them ends the run. The streak is counted on the device, never read inside a step; it is read where the metrics are
read anyway (the end of a print window), and every checkpoint write first checks that the weights are finite.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from common.cli_errors import UserError

from ..runtime import distributed

EXIT_DIVERGED = 3


class TrainingDiverged(UserError):
    exit_code = EXIT_DIVERGED


class DivergenceWatch:
    def __init__(self, device: torch.device, limit: int):
        self.limit = limit
        self.streak = torch.zeros((), dtype=torch.int32, device=device)

    def add(self, loss: torch.Tensor) -> None:
        bad = ~torch.isfinite(loss.detach())
        self.streak.mul_(bad).add_(bad)  # +1 on a non-finite loss, back to 0 on a finite one

    def check(self, step: int, epoch: int) -> None:
        """Raises TrainingDiverged on every rank once any rank's streak reached the limit; `step` counts the run's
        steps so far (1-based)."""
        streak = int(distributed.all_reduce_max(self.streak.clone()).item())
        if streak >= self.limit:
            raise TrainingDiverged(
                f"training diverged: the loss was NaN or inf for {streak} steps in a row, since step "
                f"{step - streak + 1} (epoch {epoch}); nothing was saved after it, so the last checkpoint holds "
                f"finite weights. Lower the learning rate (or clip gradients, or use bf16) and resume from it or "
                f"start again")


def weights_are_finite(*modules: nn.Module) -> bool:
    """On every rank: whether all parameters and buffers of `modules`, on every rank, are finite."""
    flags = [torch.isfinite(t).all() for m in modules if m is not None
             for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()]
    if not flags:
        return True
    bad = (~torch.stack(flags).all()).float().reshape(1)
    return not bool(distributed.all_reduce_max(bad).item())
