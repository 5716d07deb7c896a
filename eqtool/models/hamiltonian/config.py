"""The ``loss`` section of a ``task: hamiltonian`` recipe (in ``eqtool.config.schema.LOSS_SCHEMAS``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HamiltonianLossConfig"]


@dataclass(frozen=True)
class HamiltonianLossConfig:
    """QHNet's loss on the Hamiltonian matrix: ``w_mae MAE(H) + w_mse MSE(H)`` over all AO blocks (Hartree).

    Attributes:
        mae: weight of the mean absolute error term.
        mse: weight of the mean squared error term.
    """

    mae: float = 1.0
    mse: float = 1.0

    def __post_init__(self):
        from eqtool.config.schema import ConfigValueError  # schema imports this module

        for key in ("mae", "mse"):
            if getattr(self, key) < 0:
                raise ConfigValueError(key, "loss weights must be >= 0")
        if self.mae + self.mse <= 0:
            raise ConfigValueError("mae", "all loss weights are zero")
