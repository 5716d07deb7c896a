"""Loss terms of the training tasks.

Potential loss (MACE-style weighted sum)::

    L = w_E * l(E_pred / N, E_ref / N) + w_F * l(F_pred, F_ref) + w_S * l(S_pred, S_ref)

with ``l`` the mean squared error or the Huber loss (threshold ``delta`` in the target's units),
energies per atom (eV/atom), forces per component (eV/Å) and stress per component (eV/Å³) over
the systems that carry a stress label (periodic systems only; see :data:`STRESS_MASK`).
"""

from __future__ import annotations

import torch

from eqtool.data import keys as K

__all__ = ["STRESS_MASK", "elementwise", "potential_loss"]

# system-level float key set by the data module: 1 where the stress label is real, 0 where padded
STRESS_MASK = "stress_mask"


def elementwise(kind: str, delta: float = 0.01):
    """Return ``fn(pred, target) -> [..]`` elementwise loss for ``kind`` ``"mse"`` or ``"huber"``."""
    if kind == "mse":
        return lambda p, t: (p - t).square()
    if kind == "huber":
        return lambda p, t: torch.nn.functional.huber_loss(p, t, reduction="none", delta=delta)
    raise ValueError(f"unknown loss kind {kind!r}")


def _masked_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    w = weight.reshape(-1, *([1] * (values.dim() - 1))).expand_as(values)
    return (values * w).sum() / w.sum().clamp_min(1.0)


def potential_loss(pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted potential loss and its (unweighted) terms.

    Args:
        pred: model outputs: ``energy`` [B] eV, ``forces`` [N, 3] eV/Å, ``stress`` [B, 3, 3] eV/Å³.
        batch: labels with the same keys, ``n_atoms`` [B] and optionally :data:`STRESS_MASK` [B].
        cfg: a :class:`~eqtool.config.schema.PotentialLossConfig`.

    Returns:
        ``(total, {"energy": ..., "forces": ..., "stress": ...})`` (terms present in both dicts).
    """
    fn = elementwise(cfg.kind, cfg.delta)
    n = batch[K.N_ATOMS].to(pred[K.ENERGY].dtype)
    terms: dict[str, torch.Tensor] = {}
    terms["energy"] = fn(pred[K.ENERGY] / n, batch[K.ENERGY] / n).mean()
    total = cfg.energy * terms["energy"]
    if cfg.forces > 0 and K.FORCES in pred and K.FORCES in batch:
        terms["forces"] = fn(pred[K.FORCES], batch[K.FORCES]).mean()
        total = total + cfg.forces * terms["forces"]
    if cfg.stress > 0 and K.STRESS in pred and K.STRESS in batch:
        mask = batch.get(STRESS_MASK)
        terms["stress"] = _masked_mean(fn(pred[K.STRESS], batch[K.STRESS]), mask)
        total = total + cfg.stress * terms["stress"]
    return total, terms
