"""Error metrics (MAE, RMSE) accumulated over an epoch and synchronised across processes.

Reported units: energy meV/atom, forces meV/Å, stress meV/Å³.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics import Metric

from eqtool.data import keys as K
from eqtool.tasks.losses import STRESS_MASK

__all__ = ["ErrorMetric", "PotentialMetrics", "UNITS"]

UNITS = {"energy": "meV/atom", "forces": "meV/Å", "stress": "meV/Å³"}


class ErrorMetric(Metric):
    """Running sums of |error| and error² (summed over processes) -> ``(mae, rmse)``."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("abs_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sq_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None):
        err = (pred.detach() - target.detach()).to(torch.float64)
        if weight is None:
            w = torch.ones_like(err)
        else:
            w = weight.detach().to(torch.float64).reshape(-1, *([1] * (err.dim() - 1))).expand_as(err)
        self.abs_sum += (err.abs() * w).sum()
        self.sq_sum += (err.square() * w).sum()
        self.count += w.sum()

    def compute(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mae, rmse, count)`` over everything seen by all processes."""
        n = self.count.clamp_min(1.0)
        return self.abs_sum / n, (self.sq_sum / n).sqrt(), self.count.clone()


class PotentialMetrics(torch.nn.Module):
    """MAE/RMSE of energy per atom, forces and stress (stress only where :data:`STRESS_MASK` is 1)."""

    def __init__(self):
        super().__init__()
        self.energy = ErrorMetric()
        self.forces = ErrorMetric()
        self.stress = ErrorMetric()

    def update(self, pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        n = batch[K.N_ATOMS].to(pred[K.ENERGY].dtype)
        self.energy.update(pred[K.ENERGY] / n, batch[K.ENERGY] / n)
        if K.FORCES in pred and K.FORCES in batch:
            self.forces.update(pred[K.FORCES], batch[K.FORCES])
        if K.STRESS in pred and K.STRESS in batch:
            self.stress.update(pred[K.STRESS], batch[K.STRESS], batch.get(STRESS_MASK))

    def compute(self) -> dict[str, float]:
        """``{"energy_mae": meV/atom, "energy_rmse": ..., "forces_mae": meV/Å, ...}``, seen terms only.

        Collective under DDP: every process must call it.
        """
        out = {}
        for name in ("energy", "forces", "stress"):
            with warnings.catch_warnings():  # a rank may have seen no stress: compute anyway (collective)
                warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
                mae, rmse, count = getattr(self, name).compute()
            if float(count) > 0:
                out[f"{name}_mae"] = 1000.0 * float(mae)
                out[f"{name}_rmse"] = 1000.0 * float(rmse)
        return out

    def reset(self) -> None:
        for name in ("energy", "forces", "stress"):
            getattr(self, name).reset()
