"""Symmetry-corrected heavy-atom RMSD between two poses of the same ligand (no superposition)."""

from __future__ import annotations

import numpy as np

from eqtool.errors import EqtoolError

__all__ = ["symmetry_rmsd"]


def _skeleton(mol):
    """Heavy atoms only, every bond single, no aromaticity or charges: matching by element graph only,
    so poses whose bond orders or protonation were perceived differently still compare."""
    from rdkit import Chem

    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    index = {old: new for new, old in enumerate(heavy)}
    rw = Chem.RWMol()
    for old in heavy:
        atom = Chem.Atom(mol.GetAtomWithIdx(old).GetAtomicNum())
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if i in index and j in index:
            rw.AddBond(index[i], index[j], Chem.BondType.SINGLE)
    out = rw.GetMol()
    out.UpdatePropertyCache(strict=False)
    return out, np.asarray(heavy)


def symmetry_rmsd(probe, ref, probe_conf: int = -1, ref_conf: int = -1, max_matches: int = 100_000) -> float:
    """Heavy-atom RMSD (Å) of ``probe`` against ``ref``, minimised over graph automorphisms.

    Atoms are compared in place (both poses in the receptor frame); equivalent atoms (the two oxygens
    of a carboxylate, the ring carbons of a phenyl) may swap, as in spyrmsd/PoseBusters.

    Args:
        probe: RDKit molecule (docked pose), hydrogens optional.
        ref: RDKit molecule (crystal pose) with the same heavy-atom graph.
        probe_conf, ref_conf: conformer ids (-1: the default conformer).
        max_matches: cap on enumerated automorphisms.

    Raises:
        EqtoolError: if the two heavy-atom graphs differ.
    """
    p_sk, p_idx = _skeleton(probe)
    r_sk, r_idx = _skeleton(ref)
    if p_sk.GetNumAtoms() != r_sk.GetNumAtoms():
        raise EqtoolError(f"the pose has {p_sk.GetNumAtoms()} heavy atoms, the reference "
                          f"{r_sk.GetNumAtoms()}", source="rmsd")
    matches = r_sk.GetSubstructMatches(p_sk, uniquify=False, useChirality=False, maxMatches=max_matches)
    if not matches:
        raise EqtoolError("the pose and the reference are different molecules (heavy-atom graphs differ)",
                          source="rmsd")
    p = probe.GetConformer(probe_conf).GetPositions()[p_idx]  # [n_heavy, 3] Å
    r = ref.GetConformer(ref_conf).GetPositions()[r_idx]  # [n_heavy, 3] Å
    m = np.asarray(matches)  # [n_matches, n_heavy]: ref index for each probe atom
    sq = ((r[m] - p[None]) ** 2).sum(axis=-1).mean(axis=-1)  # [n_matches] Å²
    return float(np.sqrt(sq.min()))
