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
        orth: weight of the MAE of the error in the Löwdin-orthogonalised basis,
            ``S^-1/2 (H_pred - H_ref) S^-1/2`` (needs ``overlap`` labels). The AO-basis terms weigh
            every matrix element alike, but orbital energies and coefficients see the error through
            ``S^-1/2``, which magnifies it along near-linearly-dependent AO combinations (ethanol in
            def2-SVP: a 0.4 mHa H MAE gives LUMO errors of tens of mHa). 0 turns it off.
        occ: weight of the MAE of the occupied orbital energies (eigenvalues of the orthogonalised H;
            needs ``overlap`` and ``n_occ`` labels). 0 turns it off.
    """

    mae: float = 1.0
    mse: float = 1.0
    orth: float = 0.0
    occ: float = 0.0

    def __post_init__(self):
        from eqtool.config.schema import ConfigValueError  # schema imports this module

        for key in ("mae", "mse", "orth", "occ"):
            if getattr(self, key) < 0:
                raise ConfigValueError(key, "loss weights must be >= 0")
        if self.mae + self.mse + self.orth + self.occ <= 0:
            raise ConfigValueError("mae", "all loss weights are zero")
