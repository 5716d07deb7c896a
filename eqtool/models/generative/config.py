"""The ``loss`` section of a ``task: generative`` recipe (in ``eqtool.config.schema.LOSS_SCHEMAS``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["GenerativeLossConfig"]


@dataclass(frozen=True)
class GenerativeLossConfig:
    """EDM's simplified objective ``w_x |eps_x - eps_hat_x|^2 + w_h |eps_h - eps_hat_h|^2`` per coordinate.

    Attributes:
        kind: ``"l2"`` (the simplified objective of EDM; the variational bound is not implemented).
        positions: weight ``w_x`` of the position noise.
        features: weight ``w_h`` of the atom-feature noise.
    """

    kind: Literal["l2"] = "l2"
    positions: float = 1.0
    features: float = 1.0

    def __post_init__(self):
        from eqtool.config.schema import ConfigValueError  # schema imports this module

        for key in ("positions", "features"):
            if getattr(self, key) < 0:
                raise ConfigValueError(key, "loss weights must be >= 0")
        if self.positions + self.features <= 0:
            raise ConfigValueError("positions", "all loss weights are zero")
