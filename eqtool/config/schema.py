"""Typed, frozen run configuration: one dataclass per recipe section.

A recipe is a YAML mapping with the sections below; every key is checked by
:func:`eqtool.config.load.build_section` (unknown keys and wrong types are errors). Defaults here are
the documented defaults; ``None`` means "off" or "not set" where stated.

Units: energies eV, forces eV/Å, stress eV/Å³, lengths Å, times in seconds unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from eqtool.models.docking.config import DockingLossConfig
from eqtool.models.generative.config import GenerativeLossConfig
from eqtool.models.hamiltonian.config import HamiltonianLossConfig

__all__ = [
    "DataConfig", "ModelConfig", "PotentialLossConfig", "OptimConfig", "TrainerConfig", "RunConfig",
    "LOSS_SCHEMAS", "TASK_NAMES", "ConfigValueError",
]


class ConfigValueError(ValueError):
    """A value with the right type but an invalid setting; ``key`` is relative to its section."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigValueError(key, message)


def _auto_or_number(value, key: str, positive: bool = True) -> None:
    if isinstance(value, str):
        _require(value == "auto", key, f"must be 'auto' or a number, got {value!r}")
    elif positive:
        _require(value > 0, key, f"must be > 0, got {value}")


@dataclass(frozen=True)
class DataConfig:
    """Where the structures come from and how they are split and batched.

    Attributes:
        path: an eqtool ``.h5`` dataset (read lazily) or any structure file ASE reads (read into
            memory).
        split: a JSON file ``{"train": [...], "val": [...], "test": [...]}`` of frame indices; if
            ``None`` the frames are split randomly with ``val_fraction``/``test_fraction``/``seed``.
        max_train: use at most this many training frames (a seeded random subset).
        batch_size: systems per training batch (per device).
        val_batch_size: systems per validation/test batch (default ``batch_size``).
        num_workers: DataLoader worker processes (edges are computed in the workers).
    """

    path: str
    split: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    max_train: int | None = None
    batch_size: int = 8
    val_batch_size: int | None = None
    num_workers: int = 0

    def __post_init__(self):
        _require(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1)")
        _require(0 <= self.test_fraction < 1, "test_fraction", "must be in [0, 1)")
        _require(self.val_fraction + self.test_fraction < 1, "test_fraction",
                 "val_fraction + test_fraction must be < 1")
        _require(self.max_train is None or self.max_train >= 1, "max_train", "must be >= 1")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(self.val_batch_size is None or self.val_batch_size >= 1, "val_batch_size",
                 "must be >= 1")
        _require(self.num_workers >= 0, "num_workers", "must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    """The model: a registry name, its keyword arguments and the statistics fitted from data.

    Attributes:
        name: key of :data:`eqtool.models.registry.MODELS`.
        kwargs: passed to ``build_model(name, **kwargs)`` (cutoff, irreps, ...).
        e0s: ``"fit"`` (least squares on the training split), or ``{Z or symbol: eV}``.
        avg_num_neighbors: ``"auto"`` (from the training split) or a number.
        scale: ``"auto"`` (force RMS of the training split) or a number, eV.
        shift: ``"auto"`` (mean per-atom energy after E0s) or a number, eV/atom.
        init_from: a model file or shipped model name whose weights start a fresh run (fine-tuning):
            the model is built from that file -- architecture and fitted statistics included -- and
            ``kwargs`` given here must agree with it. Ignored by ``--resume``.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    e0s: str | dict[str | int, float] = "fit"
    avg_num_neighbors: str | float = "auto"
    scale: str | float = "auto"
    shift: str | float = "auto"
    init_from: str | None = None

    def __post_init__(self):
        if isinstance(self.e0s, str):
            _require(self.e0s == "fit", "e0s", f"must be 'fit' or a mapping element -> eV, got {self.e0s!r}")
        _auto_or_number(self.avg_num_neighbors, "avg_num_neighbors")
        _auto_or_number(self.scale, "scale")
        _auto_or_number(self.shift, "shift", positive=False)


@dataclass(frozen=True)
class PotentialLossConfig:
    """Loss of a potential: ``w_E L(E/N) + w_F L(F) + w_S L(stress)`` (stress: periodic only).

    Attributes:
        energy, forces, stress: weights of the per-atom energy, force and stress terms.
        kind: ``"mse"`` or ``"huber"``.
        delta: the Huber threshold (in the target's units: eV/atom, eV/Å, eV/Å³).
    """

    energy: float = 1.0
    forces: float = 10.0
    stress: float = 0.0
    kind: Literal["mse", "huber"] = "mse"
    delta: float = 0.01

    def __post_init__(self):
        for key in ("energy", "forces", "stress"):
            _require(getattr(self, key) >= 0, key, "loss weights must be >= 0")
        _require(self.energy + self.forces + self.stress > 0, "energy", "all loss weights are zero")
        _require(self.delta > 0, "delta", "must be > 0")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, a learning-rate schedule, gradient clipping and EMA weights.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW decoupled weight decay.
        scheduler: ``"plateau"`` (on the validation loss), ``"cosine"`` (to ``min_lr`` at
            ``max_epochs``) or ``"none"``.
        warmup_epochs: linear warm-up from ``lr/10`` over this many epochs (0 = off).
        plateau_factor, plateau_patience: ReduceLROnPlateau settings (patience in validations).
        min_lr: floor of the learning rate.
        grad_clip: clip the global gradient norm to this value (``None`` = off).
        ema_decay: exponential moving average of the weights, used for validation, test and
            export (``None`` = off).
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: Literal["plateau", "cosine", "none"] = "plateau"
    warmup_epochs: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    min_lr: float = 1e-6
    grad_clip: float | None = 10.0
    ema_decay: float | None = 0.99

    def __post_init__(self):
        _require(self.lr > 0, "lr", "must be > 0")
        _require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        _require(self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")
        _require(0 < self.plateau_factor < 1, "plateau_factor", "must be in (0, 1)")
        _require(self.plateau_patience >= 0, "plateau_patience", "must be >= 0")
        _require(0 <= self.min_lr <= self.lr, "min_lr", "must be in [0, lr]")
        _require(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be > 0 or null")
        _require(self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay", "must be in (0, 1) or null")


@dataclass(frozen=True)
class TrainerConfig:
    """Lightning ``Trainer`` settings.

    Attributes:
        max_epochs: number of epochs.
        max_time: wall-clock limit ``"DD:HH:MM:SS"`` (``None`` = none); training stops cleanly and
            can be resumed.
        dtype: ``"float32"`` or ``"float64"`` (model weights and batches).
        seed: seeds Python, numpy and torch (``lightning.seed_everything``).
        accelerator, devices, num_nodes, strategy: as in ``lightning.Trainer``; SLURM is detected.
        log_every: log training metrics every this many steps.
        check_val_every: validate every this many epochs.
        checkpoint_every_steps: also write ``last.ckpt`` every this many steps (long epochs).
        progress_bar: show the rich progress bar.
    """

    max_epochs: int = 100
    max_time: str | None = None
    dtype: Literal["float32", "float64"] = "float64"
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    log_every: int = 10
    check_val_every: int = 1
    checkpoint_every_steps: int | None = None
    progress_bar: bool = True

    def __post_init__(self):
        _require(self.max_epochs >= 1, "max_epochs", "must be >= 1")
        _require(self.num_nodes >= 1, "num_nodes", "must be >= 1")
        _require(self.log_every >= 1, "log_every", "must be >= 1")
        _require(self.check_val_every >= 1, "check_val_every", "must be >= 1")
        _require(self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
                 "checkpoint_every_steps", "must be >= 1 or null")
        if self.max_time is not None:
            parts = self.max_time.split(":")
            _require(len(parts) == 4 and all(p.isdigit() for p in parts), "max_time",
                     f"must look like 'DD:HH:MM:SS', got {self.max_time!r}")


@dataclass(frozen=True)
class RunConfig:
    """A whole recipe. ``loss`` is the loss schema of ``task`` (see :data:`LOSS_SCHEMAS`).

    ``run_dir`` defaults to ``runs/<recipe file stem>``.
    """

    data: DataConfig
    model: ModelConfig
    task: str = "potential"
    loss: Any = field(default_factory=PotentialLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run_dir: str | None = None

    def __post_init__(self):
        _require(self.task in LOSS_SCHEMAS, "task",
                 f"unknown task {self.task!r}; available: {', '.join(LOSS_SCHEMAS)}")


# task name -> schema of its `loss` section (new tasks add one line here and one in eqtool.tasks)
LOSS_SCHEMAS: dict[str, type] = {
    "potential": PotentialLossConfig,
    "generative": GenerativeLossConfig,
    "hamiltonian": HamiltonianLossConfig,
    "docking": DockingLossConfig,
}
TASK_NAMES = tuple(LOSS_SCHEMAS)
