"""Lightning data module over an eqtool HDF5 dataset (lazy) or any structure file (in memory).

Edges are computed per system in :meth:`GraphDataset.__getitem__` (so DataLoader workers do it),
then :class:`Collater` batches the graphs into the flat dict of :mod:`eqtool.data.batch`.
Under DDP, Lightning swaps in a ``DistributedSampler`` itself.

Splits come from a JSON file ``{"train": [...], "val": [...], "test": [...]}`` of frame indices
(``test`` optional) or from seeded random fractions; ``max_train`` keeps a seeded random subset
of the training frames.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from eqtool.data import keys as K
from eqtool.data.batch import collate
from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError
from eqtool.tasks.losses import STRESS_MASK

__all__ = ["open_structures", "open_splits", "check_fractions", "random_split", "resolve_splits",
           "GraphDataset", "Collater", "PotentialDataModule", "SPLITS"]

SPLITS = ("train", "val", "test")
H5_SUFFIXES = (".h5", ".hdf5")


def open_structures(path: str | os.PathLike, indices: Sequence[int] | None = None) -> Sequence[AtomGraph]:
    """A sequence of graphs: lazy :class:`~eqtool.io.hdf5.H5Dataset` for ``.h5``, else a list."""
    path = Path(path)
    if not path.exists():
        raise EqtoolError("dataset file not found", source=str(path))
    if path.suffix.lower() in H5_SUFFIXES:
        from eqtool.io.hdf5 import H5Dataset

        return H5Dataset(path, indices=indices)
    from eqtool.io import read_structures

    graphs = read_structures(str(path))
    return graphs if indices is None else [graphs[int(i)] for i in indices]


def open_splits(cfg, check=None) -> tuple[dict[str, np.ndarray], dict[str, Sequence[AtomGraph]]]:
    """The train/val/test frame indices of the dataset ``cfg.path`` and each split's graphs.

    Args:
        cfg: a :class:`~eqtool.config.schema.DataConfig` (``path``, ``split`` and fractions).
        check: called with the whole dataset before splitting (e.g. to check file attributes).

    Returns:
        ``(splits, parts)``: index arrays and graph sequences (lazy for HDF5) per split name.

    Raises:
        EqtoolError: missing or empty dataset, bad split file.
    """
    full = open_structures(cfg.path)
    if len(full) == 0:
        raise EqtoolError("dataset has no frames", source=str(cfg.path))
    if check is not None:
        check(full)
    splits = resolve_splits(cfg, len(full))
    parts = {name: [full[int(i)] for i in idx] if isinstance(full, list) else
             open_structures(cfg.path, indices=idx) for name, idx in splits.items()}
    return splits, parts


def _read_split(path: Path, n: int) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise EqtoolError("split file not found", source=str(path))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EqtoolError(f"not valid JSON ({e.msg})", str(path), f"line {e.lineno}") from None
    if not isinstance(raw, dict) or "train" not in raw or "val" not in raw:
        raise EqtoolError('a split file must be a JSON object with "train" and "val" index lists '
                          '(and optionally "test")', source=str(path))
    out = {}
    for name in SPLITS:
        values = raw.get(name, [])
        if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                   for v in values):
            raise EqtoolError(f"{name!r} must be a list of integer frame indices", source=str(path))
        idx = np.asarray(values, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx[(idx < 0) | (idx >= n)][0])
            raise EqtoolError(f"{name!r} index {bad} out of range: the dataset has {n} frames", str(path))
        out[name] = idx
    if len(out["train"]) == 0:
        raise EqtoolError('"train" is empty', source=str(path))
    return out


def check_fractions(val: float, test: float, source: str = "data") -> None:
    """EqtoolError unless ``0 <= val``, ``0 <= test`` and ``val + test < 1`` (NaN fails)."""
    if not (0.0 <= val < 1.0 and 0.0 <= test < 1.0 and val + test < 1.0):
        raise EqtoolError(f"fractions must satisfy 0 <= val, test and val + test < 1 (got val={val}, "
                          f"test={test})", source=source)


def random_split(n: int, val: float, test: float, seed: int, source: str = "data") -> dict[str, np.ndarray]:
    """Seeded random train/val/test frame indices covering ``range(n)``, each sorted (int64).

    ``round(val * n)`` frames go to val and the next ``round(test * n)`` of the permutation to test;
    the rest train. Training without a split file (``data.val_fraction``, ``data.test_fraction``,
    ``data.seed``) and ``eqtool data split --val --test --seed`` give the same split.

    Raises:
        EqtoolError: fractions outside ``0 <= val, test`` and ``val + test < 1``, or no training frame left.
    """
    check_fractions(val, test, source)
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = round(val * n), round(test * n)
    if n - n_val - n_test < 1:
        raise EqtoolError(f"{n} frames are too few for val={val}, test={test}: no training frame left",
                          source=source)
    return {"train": np.sort(perm[n_val + n_test:]), "val": np.sort(perm[:n_val]),
            "test": np.sort(perm[n_val:n_val + n_test])}


def resolve_splits(cfg, n: int) -> dict[str, np.ndarray]:
    """Frame indices of the train/val/test splits for a dataset of ``n`` frames.

    Args:
        cfg: a :class:`~eqtool.config.schema.DataConfig`.
        n: number of frames in ``cfg.path``.
    """
    if cfg.split is not None:
        splits = _read_split(Path(cfg.split), n)
    else:
        if cfg.val_fraction > 0 and round(cfg.val_fraction * n) == 0:
            raise EqtoolError(f"{n} frames are too few for val_fraction={cfg.val_fraction}",
                              source=str(cfg.path))
        splits = random_split(n, cfg.val_fraction, cfg.test_fraction, cfg.seed, source=str(cfg.path))
    if cfg.max_train is not None and len(splits["train"]) > cfg.max_train:
        rng = np.random.default_rng(cfg.seed + 1)
        splits["train"] = np.sort(rng.choice(splits["train"], cfg.max_train, replace=False))
    if len(splits["val"]) == 0:
        raise EqtoolError("the validation split is empty; set data.val_fraction > 0 or give a split "
                          "file with val indices", source=str(cfg.split or cfg.path))
    return splits


class GraphDataset(Dataset):
    """Graphs with edges for ``cutoff`` and the labels a potential trains on (picklable).

    Every item gets a ``stress`` label ``[3, 3]`` (zeros where the frame has none or is not fully
    periodic) and ``stress_mask`` (1.0 where the stress is real), so mixed batches keep stress.

    Args:
        graphs: any sequence of :class:`AtomGraph` (e.g. a lazy ``H5Dataset``).
        cutoff: Å.
        require_energy: raise :class:`EqtoolError` for a frame without an energy label.
    """

    def __init__(self, graphs: Sequence[AtomGraph], cutoff: float, require_energy: bool = True):
        self.graphs, self.cutoff, self.require_energy = graphs, float(cutoff), require_energy

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> AtomGraph:
        g = self.graphs[i].with_edges(self.cutoff)
        labels = g.labels
        if self.require_energy and K.ENERGY not in labels:
            src, _, frame = (g.source or "dataset@?").rpartition("@")
            raise EqtoolError("frame has no energy label; a potential needs energies", src, f"frame {frame}")
        real = K.STRESS in labels and bool(np.all(g.pbc))
        if not real:
            labels[K.STRESS] = np.zeros((3, 3))
        labels[STRESS_MASK] = np.asarray(1.0 if real else 0.0)
        return g


class Collater:
    """Picklable ``collate_fn``: a list of graphs -> flat batch dict in ``dtype``."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def __call__(self, graphs: list[AtomGraph]) -> dict[str, torch.Tensor]:
        return collate(graphs, dtype=self.dtype)


class PotentialDataModule(L.LightningDataModule):
    """Train/val/test loaders for a potential.

    Args:
        cfg: a :class:`~eqtool.config.schema.DataConfig`.
        cutoff: the model's cutoff, Å.
        dtype: float dtype of the batches.
    """

    def __init__(self, cfg, cutoff: float, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.cfg, self.cutoff, self.dtype = cfg, float(cutoff), dtype
        self.datasets: dict[str, GraphDataset] = {}
        self.splits: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.splits, parts = open_splits(self.cfg)
        self.datasets = {name: GraphDataset(graphs, self.cutoff) for name, graphs in parts.items()}

    def loader(self, name: str, shuffle: bool = False, batch_size: int | None = None) -> DataLoader:
        """DataLoader over split ``name`` (``"train"``, ``"val"``, ``"test"``)."""
        self.setup()
        workers = self.cfg.num_workers
        return DataLoader(
            self.datasets[name], batch_size=batch_size or self.cfg.batch_size, shuffle=shuffle,
            collate_fn=Collater(self.dtype), num_workers=workers, persistent_workers=workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", shuffle=False, batch_size=self.cfg.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", shuffle=False, batch_size=self.cfg.val_batch_size)

    def stats_loader(self, batch_size: int = 32) -> DataLoader:
        """Unshuffled loader over the training split (for E0s and normalisation statistics)."""
        self.setup()
        return DataLoader(self.datasets["train"], batch_size=batch_size, shuffle=False,
                          collate_fn=Collater(self.dtype), num_workers=self.cfg.num_workers)
