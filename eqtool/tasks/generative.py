"""Training of diffusion models (``task: generative``): data, Lightning task, run setup and export.

* :class:`MoleculeDataModule` -- molecules held in memory as ``(positions, atomic_numbers)``,
  batched as ``positions``, ``atomic_numbers``, ``batch``, ``n_atoms`` (no edges: the denoiser is
  fully connected within each molecule).
* :class:`GenerativeTask` -- EDM's simplified loss (:func:`eqtool.models.generative.diffusion_loss`),
  AdamW, the schedules of :class:`~eqtool.tasks.potential.PotentialTask` and EMA weights.
* :func:`prepare_generative` fits what the model stores from the training split (atom types,
  atom-count histogram); :func:`finish_generative` exports ``model.pt`` (EMA weights of the last
  checkpoint) with the training SMILES for novelty; :func:`train_generative` runs all of it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from eqtool.data import keys as K
from eqtool.errors import EqtoolError
from eqtool.models.generative.diffusion import diffusion_loss
from eqtool.tasks.base import ModelTask

__all__ = ["GenerativeTask", "MoleculeDataModule", "MoleculeDataset", "MoleculeCollater",
           "prepare_generative", "finish_generative", "train_generative", "pack_smiles", "unpack_smiles",
           "read_train_smiles", "SMILES_KEY"]

SMILES_KEY = "train_smiles_zlib"  # model-file ``extra`` key: zlib of the sorted training SMILES, one a line


def pack_smiles(smiles: Iterable[str | None]) -> bytes:
    """Distinct non-empty SMILES, sorted, newline-joined and zlib-compressed."""
    return zlib.compress("\n".join(sorted({s for s in smiles if s})).encode("utf-8"), 9)


def unpack_smiles(blob: bytes) -> list[str]:
    """Inverse of :func:`pack_smiles`."""
    text = zlib.decompress(blob).decode("utf-8")
    return text.split("\n") if text else []


class MoleculeDataset(Dataset):
    """``(positions [n, 3] float64 Å, atomic_numbers [n] int64)`` pairs read once from any graphs."""

    def __init__(self, graphs: Iterable):
        self.items = [(np.asarray(g.positions, dtype=np.float64),
                       np.asarray(g.atomic_numbers, dtype=np.int64)) for g in graphs]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]

    @property
    def n_atoms(self) -> np.ndarray:
        return np.array([len(z) for _, z in self.items], dtype=np.int64)


class MoleculeCollater:
    """Picklable ``collate_fn``: pairs -> ``{positions, atomic_numbers, batch, n_atoms}``."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def __call__(self, items: Sequence) -> dict[str, torch.Tensor]:
        n = torch.tensor([len(z) for _, z in items], dtype=torch.long)
        return {
            K.POSITIONS: torch.from_numpy(np.concatenate([p for p, _ in items])).to(self.dtype),
            K.ATOMIC_NUMBERS: torch.from_numpy(np.concatenate([z for _, z in items])),
            K.BATCH: torch.repeat_interleave(torch.arange(len(items)), n),
            K.N_ATOMS: n,
        }


class MoleculeDataModule(L.LightningDataModule):
    """Train/val/test loaders of molecules (splits as :func:`eqtool.data.datamodule.resolve_splits`).

    Args:
        cfg: a :class:`~eqtool.config.schema.DataConfig`.
        dtype: float dtype of the positions.
    """

    def __init__(self, cfg, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cfg, self.dtype = cfg, dtype
        self.datasets: dict[str, MoleculeDataset] = {}
        self.splits: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        from eqtool.data.datamodule import open_splits  # (import cycle via tasks)

        self.splits, parts = open_splits(self.cfg)
        self.datasets = {name: MoleculeDataset(graphs) for name, graphs in parts.items()}

    def _loader(self, name: str, shuffle: bool, batch_size: int | None = None) -> DataLoader:
        self.setup()
        workers = self.cfg.num_workers
        return DataLoader(self.datasets[name], batch_size=batch_size or self.cfg.batch_size, shuffle=shuffle,
                          collate_fn=MoleculeCollater(self.dtype), num_workers=workers,
                          persistent_workers=workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, batch_size=self.cfg.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, batch_size=self.cfg.val_batch_size)


class GenerativeTask(ModelTask):
    """A diffusion model with EDM's simplified loss, AdamW, LR schedule and EMA weights.

    Logs ``{train,val,test}/loss`` and the per-coordinate errors ``…/loss_positions``,
    ``…/loss_features``. Validation and test draw ``t`` and the noise from a generator seeded by
    the batch index, so ``val/loss`` is comparable between epochs.

    Args:
        model: an :class:`~eqtool.models.generative.edm.EDM` (with ``.config``).
        loss: :class:`~eqtool.models.generative.config.GenerativeLossConfig`.
        optim: :class:`~eqtool.config.schema.OptimConfig`.
        max_epochs, check_val_every: as :class:`~eqtool.tasks.base.ModelTask`.
    """

    def __init__(self, model: torch.nn.Module, loss, optim, max_epochs: int = 100, check_val_every: int = 1):
        if not hasattr(model, "encode") or not hasattr(model, "schedule"):
            raise EqtoolError(f"model {getattr(model, 'config', {}).get('name')!r} is not a diffusion model; "
                              "task 'generative' needs model.name: edm", source="recipe")
        super().__init__(model, loss, optim, max_epochs, check_val_every)

    def _step(self, split: str, batch, batch_idx: int) -> torch.Tensor:
        training = split == "train"
        model = self.model if training else self.eval_model
        gen = None
        if not training:
            gen = torch.Generator(device=batch[K.POSITIONS].device).manual_seed(int(batch_idx))
        loss, terms = diffusion_loss(model, batch, gen, self.loss_cfg.positions, self.loss_cfg.features)
        self._log_loss(split, loss, int(batch[K.N_ATOMS].shape[0]),
                       {f"loss_{name}": value for name, value in terms.items()})
        return loss if training else loss.detach()


# --------------------------------------------------------------------------- run setup
FITTED = ("atom_types", "n_atoms_hist")


def prepare_generative(cfg, log=print):
    """Build the diffusion model of ``cfg.model`` with the atom types and the atom-count histogram of
    the training split (``atom_types`` may be fixed in ``model.kwargs``; the histogram is always fitted).

    Returns:
        ``(model, datamodule)``.
    """
    from eqtool.models.registry import build_model, model_kwargs

    if "n_atoms_hist" not in model_kwargs(cfg.model.name):
        raise EqtoolError(f"model {cfg.model.name!r} is not a diffusion model; task 'generative' needs "
                          "model.name: edm", source="recipe")
    if "n_atoms_hist" in cfg.model.kwargs:
        raise EqtoolError("model.kwargs.n_atoms_hist is fitted from the training split; remove it",
                          source="recipe")
    dtype = getattr(torch, cfg.trainer.dtype)
    dm = MoleculeDataModule(cfg.data, dtype)
    dm.setup()
    n = dm.datasets["train"].n_atoms
    hist = np.bincount(n).tolist()
    types = cfg.model.kwargs.get("atom_types")
    if types is None:
        types = sorted({int(z) for _, zs in dm.datasets["train"].items for z in np.unique(zs)})
    log(f"data: {cfg.data.path}: train {len(dm.splits['train'])}, val {len(dm.splits['val'])}, "
        f"test {len(dm.splits['test'])} molecules; atom types {types}; atoms per molecule "
        f"{int(n.min())}-{int(n.max())} (mean {n.mean():.1f})")
    model = build_model(cfg.model.name, **{**cfg.model.kwargs, "atom_types": types, "n_atoms_hist": hist})
    return model.to(dtype), dm


def finish_generative(cfg, run_dir, dm, log=print) -> Path:
    """Export ``run_dir/model.pt``: EMA weights of the last checkpoint, with the training SMILES."""
    from eqtool.chem import smiles_from_structures
    from eqtool.models.files import save_model
    from eqtool.train import checkpoint_path, model_from_checkpoint

    run_dir = Path(run_dir)
    ckpt = checkpoint_path(run_dir, "last")
    model = model_from_checkpoint(ckpt)
    dm.setup()
    smiles = smiles_from_structures(dm.datasets["train"].items)
    extra = {"checkpoint": ckpt.name, "data": str(cfg.data.path), "n_train": len(dm.datasets["train"]),
             SMILES_KEY: pack_smiles(smiles)}
    out = save_model(model, run_dir / "model.pt", extra=extra)
    n_smiles = len({s for s in smiles if s})
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB; {n_smiles} distinct training SMILES)")
    return out


def train_generative(config, resume: bool = False, log=print) -> Path:
    """Train a ``task: generative`` recipe; return the run folder (layout of :func:`eqtool.train.train`:
    ``config.yaml``, ``model_config.json``, ``checkpoints/``, ``logs/``, ``model.pt``)."""
    from eqtool.train import fit, model_from_last

    def setup(last, log):
        if last is None:
            return prepare_generative(config, log=log)
        dtype = getattr(torch, config.trainer.dtype)
        return model_from_last(last, dtype), MoleculeDataModule(config.data, dtype)

    return fit(config, resume, log, setup, GenerativeTask, finish_generative)


def read_train_smiles(payload: dict, model_path: str | Path | None = None) -> list[str] | None:
    """Training SMILES stored in a model file's ``extra`` or, failing that, in ``<model>.smiles``
    (one SMILES a line) next to it; ``None`` if neither exists."""
    blob = (payload.get("extra") or {}).get(SMILES_KEY)
    if isinstance(blob, (bytes, bytearray)):
        return unpack_smiles(bytes(blob))
    if model_path is not None:
        side = Path(model_path).with_suffix(".smiles")
        if side.is_file():
            return [s for s in side.read_text(encoding="utf-8").split() if s]
    return None
