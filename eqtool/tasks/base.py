"""The Lightning plumbing every task shares: model + EMA weights, AdamW with its schedules, the steps.

A task subclasses :class:`ModelTask` and implements ``_step(split, batch, batch_idx) -> loss``
(logging its own terms) and, for metrics gathered over an epoch, ``_epoch_end(split)``.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from eqtool.tasks.ema import EMA

__all__ = ["ModelTask"]


class ModelTask(L.LightningModule):
    """A model with its loss config, optimiser, LR schedule, warm-up and EMA weights.

    Args:
        model: a registry model (dict in, dict out) with a ``.config`` dict.
        loss: the task's loss config (``eqtool.config.schema.LOSS_SCHEMAS``).
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
        self.save_hyperparameters({"model_config": dict(getattr(model, "config", {}))})

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights used for validation, test and export (EMA when enabled)."""
        return self.ema.module if self.ema is not None else self.model

    # ------------------------------------------------------------- to implement
    def _step(self, split: str, batch, batch_idx: int) -> torch.Tensor:
        raise NotImplementedError

    def _epoch_end(self, split: str) -> None:
        """Log metrics accumulated over the epoch of ``split`` (nothing by default)."""

    def _log_loss(self, split: str, loss: torch.Tensor, batch_size: int, terms: dict | None = None) -> None:
        """Log ``{split}/loss`` (per step when training) and ``{split}/{term}`` epoch means."""
        training = split == "train"
        self.log(f"{split}/loss", loss.detach(), batch_size=batch_size, on_step=training, on_epoch=True,
                 sync_dist=True, prog_bar=True)
        for name, value in (terms or {}).items():
            self.log(f"{split}/{name}", value, batch_size=batch_size, on_step=False, on_epoch=True,
                     sync_dist=True)

    # ------------------------------------------------------------------ steps
    def forward(self, batch):
        return self.eval_model(batch)

    def training_step(self, batch, batch_idx):
        return self._step("train", batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        return self._step("val", batch, batch_idx)

    def test_step(self, batch, batch_idx):
        return self._step("test", batch, batch_idx)

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
        self._epoch_end("train")
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

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
