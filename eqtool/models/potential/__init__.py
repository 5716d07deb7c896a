"""Interatomic potentials: energy models ``forward(batch) -> {"energy", "energies"}``."""

from eqtool.models.potential.egnn import EGNN
from eqtool.models.potential.mace import MACE

__all__ = ["MACE", "EGNN"]
