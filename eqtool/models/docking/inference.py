"""Docking poses from a trained EquiBind-class model (host side: RDKit conformers, torsion fit).

:func:`model_poses` is what ``eqtool dock --method model`` calls.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from eqtool.errors import EqtoolError
from eqtool.models.docking.equibind import PRED_POSITIONS
from eqtool.models.docking.featurize import (
    ComplexInput,
    collate_complexes,
    heavy_atom_indices,
    ligand_graph,
    read_receptor,
    select_pocket,
)
from eqtool.models.docking.torsion import fit_torsions, rotatable_torsions

__all__ = ["model_poses", "predict_coordinates", "ligand_conformers", "random_rotation", "FIT_RMSD_PROP"]

FIT_RMSD_PROP = "model_fit_rmsd"  # SDF property: heavy-atom RMSD (Å) of the pose to the raw prediction


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix [3, 3] (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def ligand_conformers(ligand, num: int, seed: int) -> list[np.ndarray]:
    """``num`` RDKit ETKDG conformers ``[N, 3]`` (Å) of ``ligand`` (all atoms, its atom order).

    Stereochemistry is taken from the input's 3D conformer. Falls back to the input conformer
    when embedding fails.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.Mol(ligand)
    if mol.GetNumConformers() and mol.GetConformer().Is3D():
        Chem.AssignStereochemistryFrom3D(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) & 0x7FFFFFFF
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=int(num), params=params))
    confs = [mol.GetConformer(i).GetPositions() for i in ids]
    if not confs:
        if not ligand.GetNumConformers():
            raise EqtoolError("RDKit cannot embed the ligand and it has no 3D conformer", source="ligand")
        confs = [ligand.GetConformer().GetPositions()]
    while len(confs) < num:  # repeat (then orientations differ)
        confs.append(confs[len(confs) % max(1, len(ids) or 1)])
    return confs[:num]


@torch.no_grad()
def predict_coordinates(model, items: list[ComplexInput]) -> list[np.ndarray]:
    """Raw model predictions ``[Nl, 3]`` (Å, heavy atoms, receptor frame) for each complex."""
    p = next(model.parameters())
    batch = collate_complexes(items, model.receptor_cutoff, dtype=p.dtype)
    batch = {k: v.to(p.device) for k, v in batch.items()}
    pred = model(batch)[PRED_POSITIONS].detach().cpu().double().numpy()
    if not np.isfinite(pred).all():
        raise EqtoolError("the model predicted non-finite coordinates", source="model")
    out, start = [], 0
    for it in items:
        n = len(it.ligand_positions)
        out.append(pred[start:start + n])
        start += n
    return out


def model_poses(model, receptor_pdb: str | os.PathLike, ligand, center: np.ndarray | None, num_poses: int,
                seed: int) -> list:
    """Dock ``ligand`` into ``receptor_pdb`` with an EquiBind-class model.

    Args:
        model: an :class:`~eqtool.models.docking.equibind.EquiBind` (e.g. ``load_model("dock-demo")``).
        receptor_pdb: PDB file path (or PDB text); C-alpha atoms are read.
        ligand: RDKit ``Mol`` with hydrogens and a 3D conformer (its stereochemistry is kept).
        center: pocket centre ``[3]`` Å (residues within ``model.pocket_radius`` form the pocket) or
            ``None`` for blind docking (the whole protein).
        num_poses: poses to return; each starts from a different ETKDG conformer and orientation.
        seed: seeds the conformers and orientations.

    Returns:
        ``num_poses`` RDKit Mols in the receptor frame, same atoms and order as ``ligand``, one
        conformer each, sorted by :data:`FIT_RMSD_PROP` (heavy-atom RMSD in Å between the pose and the
        raw prediction; lower = the conformer fits the prediction better). Bond lengths and angles
        are those of the ETKDG conformer.

    Raises:
        EqtoolError: unreadable receptor, no residue near ``center``, ligand without heavy atoms.
    """
    from rdkit import Chem

    if num_poses < 1:
        raise EqtoolError(f"num_poses must be >= 1, got {num_poses}", source="model")
    receptor = read_receptor(receptor_pdb)
    if center is not None:
        center = np.asarray(center, dtype=np.float64).reshape(-1)
        if center.shape != (3,) or not np.isfinite(center).all():
            raise EqtoolError(f"pocket centre must be 3 finite numbers (Å), got {center.tolist()}",
                              source="model")
    rec_pos, rec_feat = select_pocket(receptor, center, model.pocket_radius)
    heavy = heavy_atom_indices(ligand)
    if len(heavy) < 2:
        raise EqtoolError("ligand has fewer than 2 heavy atoms", source="ligand")
    feats, bonds = ligand_graph(ligand)
    torsions = rotatable_torsions(ligand, heavy)
    rng = np.random.default_rng(seed)
    start = center if center is not None else rec_pos.mean(0)
    confs, items = ligand_conformers(ligand, num_poses, seed), []
    for conf in confs:
        x = conf[heavy] - conf[heavy].mean(0)
        x = x @ random_rotation(rng).T + start
        items.append(ComplexInput(x, feats, bonds, rec_pos, rec_feat))
    poses = []
    for conf, pred in zip(confs, predict_coordinates(model, items), strict=True):
        pos, fit = fit_torsions(conf, heavy, pred, torsions)
        mol = Chem.Mol(ligand)
        mol.RemoveAllConformers()
        c = Chem.Conformer(mol.GetNumAtoms())
        for i, xyz in enumerate(pos):
            c.SetAtomPosition(i, xyz.tolist())
        c.Set3D(True)
        mol.AddConformer(c, assignId=True)
        mol.SetDoubleProp(FIT_RMSD_PROP, round(fit, 4))
        poses.append(mol)
    poses.sort(key=lambda m: m.GetDoubleProp(FIT_RMSD_PROP))
    return poses
