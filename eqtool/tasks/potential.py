"""Lightning module that trains any registry energy model as an interatomic potential.

Loss (see :mod:`eqtool.tasks.losses`): ``w_E l(E/N) + w_F l(F) + w_S l(stress)``; forces and
stress come from :func:`eqtool.physics.compute_outputs` (autograd of the energy). Metrics (MAE and
RMSE in meV/atom, meV/Å, meV/Å³) are logged as ``train/…``, ``val/…``, ``test/…``; ``val/loss``
drives checkpointing and the plateau scheduler. With ``optim.ema_decay`` set, an exponential
moving average of the weights is used for validation, test and export.
"""

from __future__ import annotations

import torch

from eqtool.data import keys as K
from eqtool.tasks.base import ModelTask
from eqtool.tasks.losses import STRESS_MASK, potential_loss
from eqtool.tasks.metrics import PotentialMetrics

__all__ = ["PotentialTask"]


class PotentialTask(ModelTask):
    """A potential: loss on energy per atom, forces and stress; MAE/RMSE metrics; EMA weights.

    Args: as :class:`~eqtool.tasks.base.ModelTask`; ``model`` is an energy model (dict in, dict out
    with ``energy`` [B] eV), ``loss`` a :class:`~eqtool.config.schema.PotentialLossConfig`.
    """

    def __init__(self, model: torch.nn.Module, loss, optim, max_epochs: int = 100, check_val_every: int = 1):
        super().__init__(model, loss, optim, max_epochs, check_val_every)
        self.metrics = torch.nn.ModuleDict({f"{s}_metrics": PotentialMetrics()
                                            for s in ("train", "val", "test")})

    def _outputs(self, model, batch, training: bool) -> dict[str, torch.Tensor]:
        from eqtool.physics import compute_outputs

        stress = bool(STRESS_MASK in batch and batch[STRESS_MASK].any()) and (
            not training or self.loss_cfg.stress > 0)
        forces = K.FORCES in batch and (not training or self.loss_cfg.forces > 0)
        return compute_outputs(model, batch, forces=forces, stress=stress, training=training)

    def _step(self, split: str, batch, batch_idx: int = 0) -> torch.Tensor:
        training = split == "train"
        model = self.model if training else self.eval_model
        with torch.enable_grad():  # forces need gradients even where Lightning disables them
            pred = self._outputs(model, batch, training)
        loss, terms = potential_loss(pred, batch, self.loss_cfg)
        self._log_loss(split, loss, int(batch[K.N_ATOMS].shape[0]))
        self.metrics[f"{split}_metrics"].update(pred, batch)
        return loss if training else loss.detach()

    def _epoch_end(self, split: str) -> None:
        values = self.metrics[f"{split}_metrics"].compute()  # synchronised over processes already
        self.metrics[f"{split}_metrics"].reset()
        for name, value in values.items():  # identical on every rank: the mean over ranks is a no-op
            self.log(f"{split}/{name}", value, sync_dist=True)
