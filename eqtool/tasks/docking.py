"""Training of docking models (``task: docking``): PDBBind-layout data, Lightning task, export.

``data.path`` is a folder of complexes ``NAME/NAME_protein.pdb`` + ``NAME/NAME_ligand.sdf`` (the
PDBBind layout). ``data.split`` (optional) is a JSON ``{"train": [...], "val": [...], "test": [...]}``
of complex names (or of indices into the sorted names); without it the complexes are split randomly.

Each training item is the true ligand (heavy atoms, target) with an input conformer drawn from
:data:`N_CONFORMERS` RDKit ETKDG conformers of the same molecule, randomly rotated, and the pocket of
the residues within ``model.pocket_radius`` of the true ligand centroid moved by Gaussian noise
(:data:`CENTRE_NOISE` Å per axis), so the model does not learn that the centre is the answer.
Validation and test items draw the same from a generator seeded by the item index.

The run folder is that of :func:`eqtool.train.train`; ``test_metrics.json`` holds ligand RMSDs
(Å, heavy atoms, symmetry-corrected, no superposition) of full poses (torsion-fitted, as
:func:`eqtool.models.docking.inference.model_poses` returns them) on the test split.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from eqtool.errors import EqtoolError
from eqtool.models.docking.featurize import (
    ComplexInput,
    collate_complexes,
    heavy_atom_indices,
    ligand_graph,
    read_receptor,
    select_pocket,
)
from eqtool.models.docking.loss import docking_loss
from eqtool.tasks.base import ModelTask

__all__ = ["DockingTask", "DockingDataModule", "ComplexDataset", "complex_names", "read_complex",
           "evaluate_poses", "train_docking", "N_CONFORMERS", "CENTRE_NOISE"]

N_CONFORMERS = 4  # ETKDG input conformers per training ligand
CENTRE_NOISE = 1.0  # Å, standard deviation per axis of the pocket-centre noise


def complex_names(folder: Path) -> list[str]:
    """Sorted names ``NAME`` of the sub-folders holding ``NAME_protein.pdb`` and ``NAME_ligand.sdf``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EqtoolError("not a folder of complexes (PDBBind layout NAME/NAME_protein.pdb, "
                          "NAME/NAME_ligand.sdf)", source=str(folder))
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / f"{p.name}_protein.pdb").is_file()
                   and (p / f"{p.name}_ligand.sdf").is_file())
    if not names:
        raise EqtoolError("no complexes found (expected NAME/NAME_protein.pdb and NAME/NAME_ligand.sdf)",
                          source=str(folder))
    return names


def read_complex(folder: Path, name: str):
    """``(receptor, ligand Mol with hydrogens)`` of complex ``name``; bad files raise EqtoolError."""
    from rdkit import Chem

    receptor = read_receptor(Path(folder) / name / f"{name}_protein.pdb")
    sdf = Path(folder) / name / f"{name}_ligand.sdf"
    supplier = Chem.SDMolSupplier(str(sdf), removeHs=False)  # first record, with its SDF properties
    mol = supplier[0] if len(supplier) else None
    if mol is None:
        raise EqtoolError("RDKit cannot read the ligand (sanitisation or kekulisation failed)",
                          source=str(sdf))
    if mol.GetNumConformers() == 0 or len(heavy_atom_indices(mol)) < 2:
        raise EqtoolError("ligand has no coordinates or fewer than 2 heavy atoms", source=str(sdf))
    return receptor, mol


class _Entry:
    """What one complex keeps in memory (numpy)."""

    def __init__(self, receptor, mol, n_conformers: int, seed: int):
        from eqtool.models.docking.inference import ligand_conformers

        self.receptor = receptor
        self.heavy = heavy_atom_indices(mol)
        self.true = mol.GetConformer().GetPositions()[self.heavy]  # [Nl, 3] Å
        self.features, self.bonds = ligand_graph(mol)
        self.conformers = [c[self.heavy] for c in ligand_conformers(mol, n_conformers, seed)]


class ComplexDataset(Dataset):
    """Complexes of a folder, each item a :class:`ComplexInput` with ``ligand_positions_true``.

    Args:
        folder: PDBBind-layout folder.
        names: complex names to use.
        pocket_radius: Å, residues selected around the (noisy) ligand centroid.
        train: draw conformer, rotation and centre noise at random (else seeded by the index).
        seed: seeds the conformers and the training draws.
        log: receives one line per complex that cannot be read (it is skipped).
    """

    def __init__(self, folder: Path, names: list[str], pocket_radius: float, train: bool, seed: int = 0,
                 log=print):
        self.pocket_radius, self.train, self.seed = float(pocket_radius), bool(train), int(seed)
        self.entries, self.names, skipped = [], [], []
        for i, name in enumerate(names):
            try:
                receptor, mol = read_complex(folder, name)
                self.entries.append(_Entry(receptor, mol, N_CONFORMERS if train else 1, seed + i))
                self.names.append(name)
            except EqtoolError as e:
                skipped.append(str(e))
        if skipped:
            log(f"skipped {len(skipped)} unreadable complex(es), e.g. {skipped[0]}")
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> ComplexInput:
        from eqtool.models.docking.inference import random_rotation

        e = self.entries[i]
        rng = self.rng if self.train else np.random.default_rng(self.seed + 1000003 * (i + 1))
        x = e.conformers[int(rng.integers(len(e.conformers)))]
        centre = e.true.mean(0) + rng.normal(scale=CENTRE_NOISE, size=3)
        rec_pos, rec_feat = select_pocket(e.receptor, centre, self.pocket_radius, min_residues=1)
        x = (x - x.mean(0)) @ random_rotation(rng).T + centre
        return ComplexInput(x, e.features, e.bonds, rec_pos, rec_feat, e.true)


class _Collater:
    def __init__(self, receptor_cutoff: float, dtype: torch.dtype):
        self.receptor_cutoff, self.dtype = receptor_cutoff, dtype

    def __call__(self, items):
        return collate_complexes(items, self.receptor_cutoff, self.dtype)


def _splits(cfg, names: list[str]) -> dict[str, list[str]]:
    from eqtool.data.datamodule import resolve_splits

    if cfg.split is None:
        idx = resolve_splits(cfg, len(names))
        return {k: [names[int(i)] for i in v] for k, v in idx.items()}
    path = Path(cfg.split)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EqtoolError(f"cannot read split file ({e})", source=str(path)) from None
    known, out = set(names), {}
    for key in ("train", "val", "test"):
        vals = raw.get(key, []) if isinstance(raw, dict) else None
        if not isinstance(vals, list):
            raise EqtoolError(f"'{key}' must be a list of complex names or indices", source=str(path))
        items = [names[v] if isinstance(v, int) and 0 <= v < len(names) else v for v in vals]
        missing = [v for v in items if v not in known]
        if missing:
            raise EqtoolError(f"'{key}' names {len(missing)} complex(es) not in {cfg.path}, "
                              f"e.g. {missing[0]!r}", source=str(path))
        out[key] = items
    if cfg.max_train is not None and len(out["train"]) > cfg.max_train:
        rng = np.random.default_rng(cfg.seed + 1)
        out["train"] = sorted(rng.choice(out["train"], cfg.max_train, replace=False).tolist())
    if not out["val"]:
        raise EqtoolError("the validation split is empty", source=str(path))
    return out


class DockingDataModule(L.LightningDataModule):
    """Train/val/test loaders of complexes (see the module docstring)."""

    def __init__(self, cfg, pocket_radius: float, receptor_cutoff: float, dtype: torch.dtype = torch.float32,
                 seed: int = 0, log=print):
        super().__init__()
        self.cfg, self.dtype, self.seed, self.log = cfg, dtype, seed, log
        self.pocket_radius, self.receptor_cutoff = pocket_radius, receptor_cutoff
        self.datasets: dict[str, ComplexDataset] = {}
        self.splits: dict[str, list[str]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        names = complex_names(Path(self.cfg.path))
        self.splits = _splits(self.cfg, names)
        for key, sub in self.splits.items():
            self.datasets[key] = ComplexDataset(Path(self.cfg.path), sub, self.pocket_radius, key == "train",
                                                self.seed, self.log)
        if len(self.datasets["train"]) == 0:
            raise EqtoolError("no readable training complex", source=str(self.cfg.path))

    def _loader(self, name: str, shuffle: bool, batch_size: int) -> DataLoader:
        self.setup()
        return DataLoader(self.datasets[name], batch_size=batch_size, shuffle=shuffle,
                          collate_fn=_Collater(self.receptor_cutoff, self.dtype),
                          num_workers=self.cfg.num_workers,
                          persistent_workers=self.cfg.num_workers > 0)

    def train_dataloader(self):
        return self._loader("train", True, self.cfg.batch_size)

    def val_dataloader(self):
        return self._loader("val", False, self.cfg.val_batch_size or self.cfg.batch_size)

    def test_dataloader(self):
        return self._loader("test", False, self.cfg.val_batch_size or self.cfg.batch_size)


class DockingTask(ModelTask):
    """A docking model with EquiBind's loss, AdamW, LR schedule and EMA weights.

    Logs ``{split}/loss``, ``{split}/coordinates`` and ``{split}/keypoints`` (Å²), ``{split}/rmsd``
    and ``{split}/centroid`` (Å, raw predictions before the torsion fit).
    """

    def __init__(self, model: torch.nn.Module, loss, optim, max_epochs: int = 100, check_val_every: int = 1):
        if getattr(model, "kind", None) != "docking":
            raise EqtoolError(f"model {getattr(model, 'config', {}).get('name')!r} is not a docking model; "
                              "task 'docking' needs model.name: equibind", source="recipe")
        super().__init__(model, loss, optim, max_epochs, check_val_every)

    def _step(self, split: str, batch, batch_idx: int = 0) -> torch.Tensor:
        training = split == "train"
        out = (self.model if training else self.eval_model)(batch)
        cfg = self.loss_cfg
        loss, terms = docking_loss(out, batch, cfg.coordinates, cfg.keypoints, cfg.geometry)
        self._log_loss(split, loss, int(batch["ligand_n_atoms"].shape[0]), terms)
        return loss if training else loss.detach()


def evaluate_poses(model, folder: Path, names: list[str], centre: str = "ligand", num_poses: int = 1,
                   seed: int = 0, log=print) -> dict:
    """Top-1 ligand RMSD of :func:`~eqtool.models.docking.inference.model_poses` on complexes.

    Args:
        centre: ``"ligand"`` (pocket centre = true ligand centroid, like ``--box-from`` the reference)
            or ``"box"`` (the ``pocket_center`` SDF property where present, else the centroid).

    Returns:
        ``{"n", "rmsd_mean", "rmsd_median", "success_2A", "success_5A", "per_complex": {name: Å}}``;
        RMSD over heavy atoms, symmetry-corrected (RDKit ``CalcRMS``), no superposition.
    """
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign

    from eqtool.models.docking.inference import model_poses

    per = {}
    for name in names:
        try:
            _, mol = read_complex(folder, name)
        except EqtoolError as e:
            log(f"skip {name}: {e}")
            continue
        c = mol.GetConformer().GetPositions()[heavy_atom_indices(mol)].mean(0)
        if centre == "box" and mol.HasProp("pocket_center"):
            c = np.array([float(v) for v in mol.GetProp("pocket_center").split()])
        protein = str(Path(folder) / name / f"{name}_protein.pdb")
        pose = model_poses(model, protein, mol, c, num_poses, seed)[0]
        per[name] = float(rdMolAlign.CalcRMS(Chem.RemoveHs(pose), Chem.RemoveHs(mol)))
    r = np.array(list(per.values()))
    if len(r) == 0:
        return {"n": 0, "per_complex": {}}
    return {"n": len(r), "rmsd_mean": float(r.mean()), "rmsd_median": float(np.median(r)),
            "success_2A": float((r < 2).mean()), "success_5A": float((r < 5).mean()),
            "per_complex": {k: round(v, 3) for k, v in per.items()}}


def _finish(config, run_dir: Path, dm: DockingDataModule, log) -> Path:
    """Export ``model.pt`` (EMA weights of the best checkpoint) and write ``test_metrics.json``."""
    from eqtool.models.files import load_model
    from eqtool.tasks.report import write_json
    from eqtool.train import export

    out = export(run_dir, which="best", extra={"data": str(config.data.path)})
    dm.setup()
    split = "test" if dm.splits.get("test") else "val"
    model = load_model(out)
    metrics = evaluate_poses(model, Path(config.data.path), dm.datasets[split].names, log=log)
    write_json(run_dir / "test_metrics.json", {"split": split, "units": "Å", **metrics})
    summary = {k: v for k, v in metrics.items() if k != "per_complex"}
    export(run_dir, which="best", extra={"data": str(config.data.path), "test_metrics": summary})
    if metrics["n"]:
        log(f"wrote {out}; {split} split: ligand RMSD mean {metrics['rmsd_mean']:.2f} Å, median "
            f"{metrics['rmsd_median']:.2f} Å, < 2 Å {100 * metrics['success_2A']:.0f}% "
            f"({metrics['n']} complexes)")
    return out


def train_docking(config, resume: bool = False, log=print) -> Path:
    """Train a ``task: docking`` recipe; return the run folder (layout of :func:`eqtool.train.train`:
    ``config.yaml``, ``model_config.json``, ``checkpoints/``, ``logs/``, ``model.pt``, ``test_metrics.json``).

    ``resume`` continues from ``checkpoints/last.ckpt`` (weights, EMA, optimiser, epoch counters).
    """
    from eqtool.models.registry import build_model
    from eqtool.train import fit, model_from_last

    dtype = getattr(torch, config.trainer.dtype)

    def setup(last, log):
        model = model_from_last(last, dtype) if last is not None else \
            build_model(config.model.name, **config.model.kwargs)
        model = model.to(dtype)
        if getattr(model, "kind", None) != "docking":
            raise EqtoolError(f"model {config.model.name!r} is not a docking model; task 'docking' needs "
                              "model.name: equibind", source="recipe")
        dm = DockingDataModule(config.data, model.pocket_radius, model.receptor_cutoff, dtype,
                               config.trainer.seed, log)
        dm.setup()
        log(f"data: {config.data.path}: " + ", ".join(f"{k} {len(v)}" for k, v in dm.datasets.items())
            + " complexes")
        return model, dm

    return fit(config, resume, log, setup, DockingTask, _finish)
