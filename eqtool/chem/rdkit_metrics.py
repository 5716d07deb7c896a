"""RDKit molecules from perceived bonds; validity, uniqueness and novelty as in EDM.

* **validity**: the molecule built from the perceived bonds sanitises in RDKit (EDM sanitises the
  whole molecule, then keeps the largest fragment; ``largest_fragment_only=True`` sanitises just
  that fragment). As in EDM, atoms keep RDKit's implicit hydrogens, so a carbon with three bonds
  is still valid (it is *unstable*, see :mod:`eqtool.chem.stability`).
* **uniqueness**: distinct SMILES among the valid molecules / valid molecules.
* **novelty**: unique SMILES not among the training SMILES / unique SMILES.

SMILES are RDKit canonical, without stereochemistry (``isomericSmiles=False``: perceived bonds
carry none) and with hydrogens implicit, so they compare equal to dataset SMILES passed through
:func:`canonical_smiles`. EDM wrote explicit ``[H]`` atoms instead; the sets compare the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from eqtool.chem._common import as_arrays
from eqtool.chem.bonds import perceive_bonds
from eqtool.errors import EqtoolError

__all__ = ["build_mol", "mol_smiles", "canonical_smiles", "validity", "uniqueness", "novelty",
           "smiles_from_structures"]


def _chem():
    try:
        from rdkit import Chem
    except ImportError as e:  # pragma: no cover - rdkit is a core dependency
        raise EqtoolError("RDKit is needed for molecule metrics: pip install rdkit") from e
    return Chem


def build_mol(atomic_numbers, bonds, positions=None, charges=None):
    """An unsanitised RDKit molecule from atoms and bonds.

    Args:
        atomic_numbers: ``[N]``.
        bonds: ``[M, 3]`` rows ``(i, j, order)``, order 1/2/3 (e.g. from
            :func:`eqtool.chem.bonds.perceive_bonds`).
        positions: optional ``[N, 3]`` Å, stored as the 3D conformer.
        charges: optional ``[N]`` integer formal charges.

    Returns:
        ``rdkit.Chem.Mol`` (not sanitised: call :func:`mol_smiles` to check it).
    """
    Chem = _chem()
    kinds = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    z = np.asarray(atomic_numbers).astype(np.int64).reshape(-1)
    b = np.asarray(bonds).astype(np.int64).reshape(-1, 3)
    mol = Chem.RWMol()
    for k, a in enumerate(z):
        atom = Chem.Atom(int(a))
        if charges is not None:
            atom.SetFormalCharge(int(charges[k]))
        mol.AddAtom(atom)
    for i, j, order in b:
        if order not in kinds or not (0 <= i < len(z) and 0 <= j < len(z)) or i == j:
            raise EqtoolError(f"bad bond ({i}, {j}, order {order}) for {len(z)} atoms")
        mol.AddBond(int(i), int(j), kinds[int(order)])
    if positions is not None:
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        conf = Chem.Conformer(len(z))
        for k, p in enumerate(pos):
            conf.SetAtomPosition(k, p.tolist())
        conf.Set3D(True)
        mol.AddConformer(conf, assignId=True)
    return mol.GetMol()


def _sanitized(mol):
    """A sanitised copy, or None if RDKit rejects it."""
    Chem = _chem()
    mol = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # RDKit raises several types (AtomValenceException, KekulizeException, ...)
        return None
    return mol


def _smiles(mol) -> str:
    Chem = _chem()
    return Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False), isomericSmiles=False)


def mol_smiles(mol, largest_fragment_only: bool = False) -> str | None:
    """Canonical SMILES of the largest fragment if the molecule is valid, else None.

    With ``largest_fragment_only=False`` (EDM) the whole molecule must sanitise; with True only
    the largest fragment (most atoms; first of equals) must.
    """
    Chem = _chem()
    from rdkit import rdBase

    with rdBase.BlockLogs():
        if not largest_fragment_only:
            mol = _sanitized(mol)
            if mol is None:
                return None
        frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
        largest = max(frags, key=lambda m: m.GetNumAtoms()) if frags else mol
        largest = _sanitized(largest)
        return None if largest is None else _smiles(largest)


def canonical_smiles(smiles: str) -> str | None:
    """RDKit canonical SMILES without stereochemistry, hydrogens implicit; None if unparsable."""
    Chem = _chem()
    from rdkit import rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
        return None if mol is None else _smiles(mol)


def smiles_from_structures(structures: Iterable, largest_fragment_only: bool = False) -> list[str | None]:
    """SMILES (None for invalid) of 3D structures through perceived bonds.

    ``structures``: :class:`~eqtool.data.graph.AtomGraph` objects or ``(positions, atomic_numbers)``
    pairs. This is how EDM turns the training set into the reference SMILES for novelty.
    """
    out = []
    for s in structures:
        pos, z = as_arrays(s)
        out.append(mol_smiles(build_mol(z, perceive_bonds(pos, z)), largest_fragment_only))
    return out


def validity(smiles: Sequence[str | None]) -> float:
    """Fraction of molecules that are valid (their SMILES is not None); 0 for no molecules."""
    return sum(s is not None for s in smiles) / len(smiles) if len(smiles) else 0.0


def uniqueness(smiles: Sequence[str | None]) -> float:
    """Distinct valid SMILES / valid SMILES (None entries are ignored); 0 if none is valid."""
    valid = [s for s in smiles if s is not None]
    return len(set(valid)) / len(valid) if valid else 0.0


def novelty(smiles: Sequence[str | None], train_smiles: Iterable[str]) -> float:
    """Distinct valid SMILES not in ``train_smiles`` / distinct valid SMILES; 0 if none is valid.

    ``train_smiles`` must already be canonical in this module's sense (:func:`canonical_smiles`
    or :func:`smiles_from_structures`).
    """
    unique = {s for s in smiles if s is not None}
    train = train_smiles if isinstance(train_smiles, (set, frozenset)) else set(train_smiles)
    return sum(s not in train for s in unique) / len(unique) if unique else 0.0
