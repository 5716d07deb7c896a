"""Write molecules as SDF with their perceived bonds (the ``eqtool generate`` output)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from eqtool.chem._common import as_arrays
from eqtool.chem.metrics import analyze_molecule
from eqtool.chem.rdkit_metrics import build_mol, mol_smiles
from eqtool.chem.stability import atom_stability
from eqtool.errors import EqtoolError
from eqtool.io.atomic import atomic_write

__all__ = ["write_sdf", "sdf_block"]


def _clean(text: str) -> str:
    return " ".join(str(text).split())[:80]


def sdf_block(structure, bonds=None, name: str | None = None) -> str:
    """One SDF record (molblock, data items, ``$$$$``) for a molecule.

    Args:
        structure: :class:`~eqtool.data.graph.AtomGraph` or ``(positions [N, 3] Å, atomic_numbers [N])``.
        bonds: ``[M, 3]`` rows ``(i, j, order)``; default ``structure.info["bonds"]`` if the graph
            has it, else the perceived bonds (:func:`eqtool.chem.bonds.perceive_bonds`).
        name: title line (default ``info["name"]``, else the graph's source, else empty).

    Data items written: ``smiles`` (empty if RDKit rejects the molecule), ``stable`` (1/0, EDM
    valence rule), ``n_stable_atoms``.
    """
    from rdkit import Chem

    pos, z = as_arrays(structure)
    info = getattr(structure, "info", {}) or {}
    if bonds is None and info.get("bonds") is not None:
        bonds = info["bonds"]
    if bonds is None:
        report = analyze_molecule((pos, z))
        bonds, smiles, stable = report.bonds, report.smiles, report.atom_stable
    else:
        bonds = np.asarray(bonds).astype(np.int64).reshape(-1, 3)
        orders = np.zeros((len(z), len(z)), dtype=np.int64)
        if len(bonds) and (bonds[:, :2].min() < 0 or bonds[:, :2].max() >= len(z)):
            raise EqtoolError(f"bond atom index out of range for {len(z)} atoms",
                              getattr(structure, "source", None))
        orders[bonds[:, 0], bonds[:, 1]] = orders[bonds[:, 1], bonds[:, 0]] = bonds[:, 2]
        stable = atom_stability(pos, z, bond_orders=orders).atom_stable
        smiles = mol_smiles(build_mol(z, bonds))
    mol = build_mol(z, bonds, positions=pos)
    mol.UpdatePropertyCache(strict=False)
    title = name if name is not None else info.get("name") or getattr(structure, "source", None) or ""
    mol.SetProp("_Name", _clean(title))
    block = Chem.MolToMolBlock(mol, kekulize=False)
    items = {"smiles": smiles or "", "stable": int(stable.all()), "n_stable_atoms": int(stable.sum())}
    data = "".join(f">  <{k}>\n{v}\n\n" for k, v in items.items())
    return block + data + "$$$$\n"


def write_sdf(path: str | os.PathLike, structures: Sequence, bonds: Sequence | None = None) -> None:
    """Write molecules to an SDF file atomically (temp file in the same folder, then rename).

    Args:
        path: output ``.sdf``.
        structures: AtomGraphs or ``(positions, atomic_numbers)`` pairs (non-periodic).
        bonds: optional per-molecule ``[M, 3]`` bond arrays; default as in :func:`sdf_block`.
    """
    if bonds is not None and len(bonds) != len(structures):
        raise EqtoolError(f"{len(bonds)} bond lists for {len(structures)} molecules", str(path))
    blocks = [sdf_block(s, None if bonds is None else bonds[k]) for k, s in enumerate(structures)]
    with atomic_write(path, "w", newline="\n") as fh:
        fh.writelines(blocks)
