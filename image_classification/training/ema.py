"""Exponential moving average of the weights and BatchNorm statistics (upstream's EMA, per optimizer step)."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


class ModelEma:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def _pairs(self, model: nn.Module):
        # Building two state_dicts every step costs milliseconds of Python on a fast GPU: keep the tensor lists for
        # as long as the model's tensors are the same objects (load_state_dict copies into them in place).
        key = (id(model), tuple(id(t) for t in model.parameters()))
        if getattr(self, "_cache_key", None) != key:
            ema_state, state = self.module.state_dict(), model.state_dict()
            keys = [k for k, v in ema_state.items() if v.dtype.is_floating_point]
            self._cache = ([ema_state[k] for k in keys], [state[k].detach() for k in keys])
            self._cache_key = key
        return self._cache

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # Upstream's warm-up of the decay: early averages follow the model closely instead of the random init.
        mu = min(self.decay, (1.0 + step) / (10.0 + step))
        ema, current = self._pairs(model)
        torch._foreach_lerp_(ema, current, 1.0 - mu)

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state_dict):
        self.module.load_state_dict(state_dict)
