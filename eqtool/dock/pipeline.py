"""The batch pipeline: many ligands, one receptor, methods ``vina``, ``model`` and ``model+vina``.

A ligand that fails (unreadable, no conformer, untypable for Vina, a model error) is recorded with a
one-line reason and the batch goes on. Output: one SDF record per pose (scores as SDF properties),
written atomically, and a failures file.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from eqtool.dock.box import Box, box_around, check_box_has_receptor
from eqtool.dock.engine import Pose, VinaEngine
from eqtool.dock.ligands import Ligand, prepare_ligand
from eqtool.dock.receptor import Receptor
from eqtool.errors import EqtoolError

__all__ = ["METHODS", "DockResult", "check_dock_options", "dock_ligands", "write_poses", "write_failures",
           "load_model_poses_fn"]

METHODS = ("vina", "model", "model+vina")

# model_poses(model, receptor_pdb, ligand_with_h, center [3] Å | None, num_poses, seed) -> list[Mol]
ModelPosesFn = Callable[..., list]


@dataclass
class DockResult:
    """What happened to one ligand.

    Attributes:
        ligand: the input ligand.
        poses: best first (empty on failure).
        seconds: wall time spent on this ligand (preparation + docking).
        error: one-line reason when it failed, else None.
    """

    ligand: Ligand
    poses: list[Pose] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def load_model_poses_fn() -> ModelPosesFn:
    """``eqtool.models.docking.inference.model_poses`` (imported lazily)."""
    try:
        from eqtool.models.docking.inference import model_poses
    except ImportError as exc:
        raise EqtoolError(f"the docking model code is not available ({exc})", source="--method") from exc
    return model_poses


def _model_poses(fn: ModelPosesFn, model, receptor: Receptor, mol, box: Box | None, num_poses: int,
                 seed: int) -> list:
    center = None if box is None else np.asarray(box.center, dtype=float)
    try:
        mols = fn(model, receptor.path, mol, center, num_poses, seed)
    except EqtoolError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise EqtoolError(f"the docking model failed: {' '.join(str(exc).split())}", source="model") from exc
    mols = list(mols)
    if not mols:
        raise EqtoolError("the docking model returned no pose", source="model")
    for m in mols:
        if m.GetNumAtoms() != mol.GetNumAtoms() or m.GetNumConformers() == 0:
            raise EqtoolError("the docking model returned a pose with a different atom count or no "
                              "coordinates", source="model")
        if not np.isfinite(m.GetConformer().GetPositions()).all():
            raise EqtoolError("the docking model returned non-finite coordinates", source="model")
    return mols


def _pose_box(box: Box | None, mols: Sequence) -> Box:
    """``box`` if it holds every atom of every pose (1 Å inside), else a box around all poses."""
    pos = np.concatenate([m.GetConformer().GetPositions() for m in mols])  # [P*N, 3] Å
    if box is not None and box.contains(pos, margin=-1.0).all():
        return box
    return box_around(pos, padding=5.0, min_size=12.0)


def _dock_one(ligand: Ligand, receptor: Receptor, box: Box | None, method: str, engine: VinaEngine | None,
              model, model_poses_fn, num_poses: int, seed: int, exhaustiveness: int,
              new_conformer: bool) -> list[Pose]:
    if ligand.error is not None:
        raise EqtoolError(ligand.error)
    mol, err = prepare_ligand(ligand.mol, seed=seed, new_conformer=new_conformer)
    if err is not None:
        raise EqtoolError(err)
    if method == "vina":
        poses = engine.dock(mol, box, num_poses=num_poses, exhaustiveness=exhaustiveness)
    else:
        mols = _model_poses(model_poses_fn, model, receptor, mol, box, num_poses, seed)
        local = _pose_box(box, mols)
        poses = []
        for rank, m in enumerate(mols, start=1):
            pose = engine.refine(m, local) if method == "model+vina" else engine.score(m, local)
            pose.properties["model_rank"] = rank
            pose.properties.update({k: v for k, v in m.GetPropsAsDict().items()
                                    if not k.startswith("_") and isinstance(v, int | float | str)})
            poses.append(pose)
        if method == "model+vina":
            poses.sort(key=lambda p: p.score)
    if not poses:
        raise EqtoolError("no pose found (Vina returned nothing within the energy range)")
    return poses[:num_poses]


def check_dock_options(method: str, num_poses: int, exhaustiveness: int) -> None:
    """EqtoolError for an unknown method or a pose count / Vina effort below 1."""
    if method not in METHODS:
        raise EqtoolError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}", source="--method")
    if num_poses < 1:
        raise EqtoolError(f"must be >= 1, got {num_poses}", source="--num-poses")
    if exhaustiveness < 1:
        raise EqtoolError(f"must be >= 1, got {exhaustiveness}", source="--exhaustiveness")


def dock_ligands(receptor: Receptor, ligands: Sequence[Ligand], box: Box | None, method: str = "vina", *,
                 num_poses: int = 9, seed: int = 0, exhaustiveness: int = 8, cpu: int = 0, model=None,
                 model_poses_fn: ModelPosesFn | None = None, new_conformer: bool = False,
                 progress: Callable[[DockResult], None] | None = None) -> list[DockResult]:
    """Dock every ligand; failures are collected, never raised.

    Args:
        receptor: from :func:`eqtool.dock.prepare_receptor`.
        ligands: from :func:`eqtool.dock.read_ligands` (ligands with ``error`` are reported as failed).
        box: search box (required for ``vina``; for the model methods its centre is the pocket hint and,
            when it holds the model's poses, it is also the refinement box).
        method: ``"vina"`` (global search), ``"model"`` (model poses, Vina score only) or
            ``"model+vina"`` (model poses, then Vina local optimisation; no global search).
        num_poses: poses kept per ligand.
        seed: seeds RDKit conformers, Vina's search and the model.
        exhaustiveness: Vina's search effort (``vina`` only).
        cpu: Vina threads (0: all cores).
        model: the docking model (``eqtool.models.files.load_model("dock-demo")``) for the model methods.
        model_poses_fn: ``fn(model, receptor_pdb, ligand, center, num_poses, seed) -> list[Mol]``;
            default :func:`load_model_poses_fn`.
        new_conformer: regenerate an RDKit conformer even for ligands read with 3D coordinates.
        progress: called with each :class:`DockResult` as soon as it is done.

    Raises:
        EqtoolError: only for problems of the whole run: unknown method, no box for ``vina``, an empty
            box, no model for a model method.
    """
    check_dock_options(method, num_poses, exhaustiveness)
    if method == "vina" and box is None:
        raise EqtoolError("Vina needs a search box: give --box-from, --center with --size, or --blind",
                          source="--method vina")
    if box is not None:
        check_box_has_receptor(box, receptor.positions, source="box")
    if method != "vina":
        if model is None and model_poses_fn is None:
            raise EqtoolError(f"method {method!r} needs a docking model", source="--model")
        model_poses_fn = model_poses_fn or load_model_poses_fn()

    results = []
    with VinaEngine(receptor, cpu=cpu, seed=seed, all_types=len(ligands) > 1) as engine:
        for ligand in ligands:
            start = time.perf_counter()
            result = DockResult(ligand)
            try:
                result.poses = _dock_one(ligand, receptor, box, method, engine, model, model_poses_fn,
                                         num_poses, seed, exhaustiveness, new_conformer)
            except EqtoolError as exc:
                result.error = exc.message if exc.source in (None, "ligand") else exc.oneline()
            result.seconds = time.perf_counter() - start
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def _clean(text: object) -> str:
    return " ".join(str(text).split())


def write_poses(path: str | os.PathLike, results: Sequence[DockResult], method: str) -> int:
    """Write every pose of every successful ligand to one SDF file, atomically; return the record count.

    Each record: title = ligand name; properties ``ligand_index``, ``ligand_source``, ``pose_rank``
    (1 = best), ``method``, ``vina_score`` (kcal/mol), ``vina_inter``, ``vina_intra`` and, for the model
    methods, ``model_rank``; ``smiles`` of the ligand.
    """
    from rdkit import Chem

    from eqtool.io.atomic import atomic_write

    buf = io.StringIO()
    writer = Chem.SDWriter(buf)
    n = 0
    for res in results:
        if not res.ok:
            continue
        smiles = Chem.MolToSmiles(Chem.RemoveHs(res.poses[0].mol))
        for rank, pose in enumerate(res.poses, start=1):
            mol = Chem.Mol(pose.mol)
            for key in list(mol.GetPropNames()):
                mol.ClearProp(key)
            mol.SetProp("_Name", _clean(res.ligand.name))
            mol.SetIntProp("ligand_index", res.ligand.index)
            mol.SetProp("ligand_source", _clean(res.ligand.source))
            mol.SetIntProp("pose_rank", rank)
            mol.SetProp("method", method)
            if pose.score is not None:
                mol.SetProp("vina_score", f"{pose.score:.3f}")
            for key, value in pose.properties.items():
                mol.SetProp(key, f"{value:.3f}" if isinstance(value, float) else str(value))
            mol.SetProp("smiles", smiles)
            writer.write(mol)
            n += 1
    writer.close()
    with atomic_write(path, "w", newline="\n") as fh:
        fh.write(buf.getvalue())
    return n


def write_failures(path: str | os.PathLike, results: Sequence[DockResult]) -> int:
    """Write the failed ligands as TSV (``index``, ``name``, ``source``, ``error``) atomically; return
    their count. The file is written (header only) even when nothing failed."""
    from eqtool.io.atomic import atomic_write

    failed = [r for r in results if not r.ok]
    lines = ["index\tname\tsource\terror\n"]
    lines += [f"{r.ligand.index}\t{_clean(r.ligand.name)}\t{_clean(r.ligand.source)}\t{_clean(r.error)}\n"
              for r in failed]
    with atomic_write(path, "w", newline="\n") as fh:
        fh.writelines(lines)
    return len(failed)
