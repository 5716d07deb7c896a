"""Exponential moving average of a model's weights (used for validation, test and export)."""

from __future__ import annotations

import copy

import torch

__all__ = ["EMA"]


class EMA(torch.nn.Module):
    """A frozen copy of ``model`` whose parameters track ``p_ema <- d p_ema + (1 - d) p``.

    The decay warms up as ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
    weights are not over-weighted. Buffers (e.g. ``atomic_numbers``, fitted statistics) are copied,
    not averaged. The copy's parameters do not require gradients, so DDP ignores them; the state
    (weights and ``n_updates``) is part of the owner's ``state_dict`` and thus of checkpoints.

    Args:
        model: the trained module.
        decay: in (0, 1), e.g. 0.99.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__()
        self.module = copy.deepcopy(model).requires_grad_(False).eval()
        self.decay = float(decay)
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        n = int(self.n_updates)
        d = min(self.decay, (1.0 + n) / (10.0 + n))
        for p_ema, p in zip(self.module.parameters(), model.parameters(), strict=True):
            p_ema.lerp_(p.detach().to(p_ema.dtype), 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)
        self.n_updates += 1

    def train(self, mode: bool = True):  # the averaged copy always stays in eval mode
        super().train(mode)
        self.module.eval()
        return self
