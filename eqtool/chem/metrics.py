"""One call for the molecule-generation metrics of EDM: stability, validity, uniqueness, novelty."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eqtool.chem._common import as_arrays
from eqtool.chem.bonds import bond_order_matrix
from eqtool.chem.rdkit_metrics import build_mol, canonical_smiles, mol_smiles
from eqtool.chem.stability import atom_stability

__all__ = ["MoleculeReport", "analyze_molecule", "analyze_sample", "molecule_metrics", "summarize"]


@dataclass(frozen=True)
class MoleculeReport:
    """Everything the metrics know about one molecule.

    Attributes:
        bonds: ``[M, 3]`` int64 rows ``(i, j, order)``, ``i < j``.
        valence: ``[N]`` int64 sum of bond orders per atom.
        atom_stable: ``[N]`` bool.
        smiles: canonical SMILES of the largest fragment, or None if RDKit rejects the molecule.
        finite: False for a generated molecule with non-finite coordinates (:func:`analyze_sample`).
    """

    bonds: np.ndarray
    valence: np.ndarray
    atom_stable: np.ndarray
    smiles: str | None
    finite: bool = True

    @property
    def stable(self) -> bool:
        return bool(self.atom_stable.all())

    @property
    def valid(self) -> bool:
        return self.smiles is not None


def analyze_molecule(structure, charges=None, largest_fragment_only: bool = False) -> MoleculeReport:
    """Perceive bonds, check valences and build the RDKit molecule of one structure.

    Args:
        structure: :class:`~eqtool.data.graph.AtomGraph` or ``(positions [N, 3] Å, atomic_numbers [N])``.
        charges: optional ``[N]`` integer formal charges (stability and RDKit); default neutral.
        largest_fragment_only: see :func:`eqtool.chem.rdkit_metrics.mol_smiles`.
    """
    pos, z = as_arrays(structure)
    orders = bond_order_matrix(pos, z)  # [N, N]
    stab = atom_stability(pos, z, charges=charges, bond_orders=orders)
    i, j = np.nonzero(np.triu(orders, 1))
    bonds = np.stack([i, j, orders[i, j]], axis=1).astype(np.int64).reshape(-1, 3)
    smiles = mol_smiles(build_mol(z, bonds, charges=charges), largest_fragment_only)
    return MoleculeReport(bonds=bonds, valence=stab.valence, atom_stable=stab.atom_stable, smiles=smiles)


def analyze_sample(structure) -> MoleculeReport:
    """:func:`analyze_molecule` for a generated molecule: non-finite coordinates (a diverged sampling
    chain) give a failed report (no bonds, every atom unstable, invalid, ``finite=False``) instead of
    an error, so they count against the metrics rather than stopping the evaluation."""
    pos, z = as_arrays(structure)
    if np.isfinite(pos).all():
        return analyze_molecule((pos, z))
    n = len(z)
    return MoleculeReport(bonds=np.zeros((0, 3), dtype=np.int64), valence=np.zeros(n, dtype=np.int64),
                          atom_stable=np.zeros(n, dtype=bool), smiles=None, finite=False)


def molecule_metrics(graphs: Sequence, train_smiles: Iterable[str] | None = None,
                     largest_fragment_only: bool = False) -> dict[str, Any]:
    """EDM's metrics over a set of generated (or reference) molecules.

    Args:
        graphs: AtomGraphs or ``(positions, atomic_numbers)`` pairs, all neutral atoms.
        train_smiles: SMILES of the training set for novelty (canonicalised here with
            :func:`~eqtool.chem.rdkit_metrics.canonical_smiles`; EDM derives them from the training
            geometries, :func:`~eqtool.chem.rdkit_metrics.smiles_from_structures`). None: no novelty.
        largest_fragment_only: see :func:`eqtool.chem.rdkit_metrics.mol_smiles`.

    Returns:
        dict with fractions in ``[0, 1]``: ``atom_stability`` (stable atoms / atoms),
        ``molecule_stability``, ``validity``, ``uniqueness`` (of valid), ``valid_unique``
        (distinct valid / all, EDM's "valid and unique"), ``novelty`` (of distinct valid; None
        without ``train_smiles``), and the counts ``n_molecules``, ``n_atoms``, ``n_stable_atoms``,
        ``n_stable_molecules``, ``n_valid``, ``n_unique``, ``n_novel`` (None without ``train_smiles``),
        ``n_nonfinite`` (reports of :func:`analyze_sample` for diverged molecules).
        Empty input gives zero counts and zero fractions.
    """
    reports = [analyze_molecule(g, largest_fragment_only=largest_fragment_only) for g in graphs]
    return summarize(reports, train_smiles)


def summarize(reports: Sequence[MoleculeReport], train_smiles: Iterable[str] | None = None) -> dict[str, Any]:
    """The :func:`molecule_metrics` dict from per-molecule reports (e.g. to score subsets)."""
    n_mol = len(reports)
    n_atoms = sum(len(r.atom_stable) for r in reports)
    n_stable_atoms = sum(int(r.atom_stable.sum()) for r in reports)
    n_stable = sum(r.stable for r in reports)
    valid = [r.smiles for r in reports if r.smiles is not None]
    unique = set(valid)
    out: dict[str, Any] = {
        "n_molecules": n_mol, "n_atoms": n_atoms, "n_stable_atoms": n_stable_atoms,
        "n_stable_molecules": n_stable, "n_valid": len(valid), "n_unique": len(unique), "n_novel": None,
        "n_nonfinite": sum(not r.finite for r in reports),
        "atom_stability": n_stable_atoms / n_atoms if n_atoms else 0.0,
        "molecule_stability": n_stable / n_mol if n_mol else 0.0,
        "validity": len(valid) / n_mol if n_mol else 0.0,
        "uniqueness": len(unique) / len(valid) if valid else 0.0,
        "valid_unique": len(unique) / n_mol if n_mol else 0.0,
        "novelty": None,
    }
    if train_smiles is not None:
        train = {c for c in map(canonical_smiles, train_smiles) if c is not None}
        n_novel = sum(s not in train for s in unique)
        out["n_novel"] = n_novel
        out["novelty"] = n_novel / len(unique) if unique else 0.0
    return out
