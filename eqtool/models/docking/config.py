"""The ``loss`` section of a ``task: docking`` recipe (in ``eqtool.config.schema.LOSS_SCHEMAS``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DockingLossConfig"]


@dataclass(frozen=True)
class DockingLossConfig:
    """EquiBind-style loss: ligand coordinate error + keypoint (optimal transport) term (Å²).

    Attributes:
        coordinates: weight of the mean squared ligand-atom position error.
        keypoints: weight of the keypoint alignment term.
        geometry: weight of the mean squared error of all intra-ligand distances of the prediction
            (EquiBind's geometry regularisation, here over all heavy-atom pairs); it keeps the model
            from hedging by shrinking the ligand.
    """

    coordinates: float = 1.0
    keypoints: float = 1.0
    geometry: float = 1.0

    def __post_init__(self):
        from eqtool.config.schema import ConfigValueError  # schema imports this module

        for key in ("coordinates", "keypoints", "geometry"):
            if getattr(self, key) < 0:
                raise ConfigValueError(key, "loss weights must be >= 0")
        if self.coordinates + self.keypoints + self.geometry <= 0:
            raise ConfigValueError("coordinates", "all loss weights are zero")
