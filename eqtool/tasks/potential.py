"""Lightning module that trains any registry energy model as an interatomic potential.

Loss (see :mod:`eqtool.tasks.losses`): ``w_E l(E/N) + w_F l(F) + w_S l(stress)``; forces and
stress come from :func:`eqtool.physics.compute_outputs` (autograd of the energy). Metrics (MAE and
RMSE in meV/atom, meV/Å, meV/Å³) are logged as ``train/…``, ``val/…``, ``test/…``; ``val/loss``
drives checkpointing and the plateau scheduler. With ``optim.ema_decay`` set, an exponential
moving average of the weights is used for validation, test and export.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from eqtool.data import keys as K
from eqtool.tasks.ema import EMA
from eqtool.tasks.losses import STRESS_MASK, potential_loss
from eqtool.tasks.metrics import PotentialMetrics

__all__ = ["PotentialTask"]


class PotentialTask(L.LightningModule):
    """A model plus its loss, metrics, optimiser, schedule and EMA weights.

    Args:
        model: an energy model (dict in, dict out with ``energy`` [B] eV) with a ``.config`` dict.
        loss: :class:`~eqtool.config.schema.PotentialLossConfig`.
        optim: :class:`~eqtool.config.schema.OptimConfig`.
        max_epochs: for the cosine schedule.
        check_val_every: validation interval in epochs (plateau scheduler frequency).
    """

    def __init__(self, model: torch.nn.Module, loss, optim, max_epochs: int = 100, check_val_every: int = 1):
        super().__init__()
        self.model = model
        self.loss_cfg, self.optim_cfg = loss, optim
        self.max_epochs, self.check_val_every = int(max_epochs), int(check_val_every)
        self.ema = EMA(model, optim.ema_decay) if optim.ema_decay is not None else None
        self.metrics = torch.nn.ModuleDict({f"{s}_metrics": PotentialMetrics()
                                            for s in ("train", "val", "test")})
        self.save_hyperparameters({"model_config": dict(getattr(model, "config", {}))})

    # ----------------------------------------------------------------- helpers
    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights used for validation, test and export (EMA when enabled)."""
        return self.ema.module if self.ema is not None else self.model

    def _outputs(self, model, batch, training: bool) -> dict[str, torch.Tensor]:
        from eqtool.physics import compute_outputs

        stress = bool(STRESS_MASK in batch and batch[STRESS_MASK].any()) and (
            not training or self.loss_cfg.stress > 0)
        forces = K.FORCES in batch and (not training or self.loss_cfg.forces > 0)
        return compute_outputs(model, batch, forces=forces, stress=stress, training=training)

    def _step(self, split: str, batch) -> torch.Tensor:
        training = split == "train"
        model = self.model if training else self.eval_model
        with torch.enable_grad():  # forces need gradients even where Lightning disables them
            pred = self._outputs(model, batch, training)
        loss, terms = potential_loss(pred, batch, self.loss_cfg)
        b = int(batch[K.N_ATOMS].shape[0])
        self.log(f"{split}/loss", loss.detach(), batch_size=b, on_step=training, on_epoch=True,
                 sync_dist=True, prog_bar=True)
        self.metrics[f"{split}_metrics"].update(pred, batch)
        return loss if training else loss.detach()

    def _log_metrics(self, split: str) -> None:
        values = self.metrics[f"{split}_metrics"].compute()  # synchronised over processes already
        self.metrics[f"{split}_metrics"].reset()
        for name, value in values.items():  # identical on every rank: the mean over ranks is a no-op
            self.log(f"{split}/{name}", value, sync_dist=True)

    # ------------------------------------------------------------------ steps
    def forward(self, batch):
        return self.eval_model(batch)

    def training_step(self, batch, batch_idx):
        return self._step("train", batch)

    def validation_step(self, batch, batch_idx):
        return self._step("val", batch)

    def test_step(self, batch, batch_idx):
        return self._step("test", batch)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def on_train_epoch_start(self) -> None:
        warm = self.optim_cfg.warmup_epochs
        if self.optim_cfg.scheduler != "cosine" and warm > 0 and self.current_epoch <= warm:
            lr = self.optim_cfg.lr * min(1.0, 0.1 + 0.9 * self.current_epoch / warm)
            for group in self.trainer.optimizers[0].param_groups:
                group["lr"] = lr

    def on_train_epoch_end(self) -> None:
        self._log_metrics("train")
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    # ---------------------------------------------------------------- optimiser
    def configure_optimizers(self):
        cfg = self.optim_cfg
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return opt
        if cfg.scheduler == "cosine":
            floor = cfg.min_lr / cfg.lr
            warm, total = cfg.warmup_epochs, max(1, self.max_epochs)

            def factor(epoch: int) -> float:
                if epoch < warm:
                    return 0.1 + 0.9 * epoch / warm
                t = min(1.0, (epoch - warm) / max(1, total - warm))
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr)
        return {"optimizer": opt, "lr_scheduler": {
            "scheduler": sched, "monitor": "val/loss", "interval": "epoch",
            "frequency": self.check_val_every, "strict": True}}
