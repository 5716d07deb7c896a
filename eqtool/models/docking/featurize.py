"""Host-side inputs of the docking model: ligand graphs (RDKit), receptor residue graphs (PDB C-alpha).

Everything here is numpy; :func:`collate_complexes` turns a list of :class:`ComplexInput` into the
flat ``dict[str, Tensor]`` the model reads (systems concatenated, never padded):

============================  ============  ==================================================
key                           shape         meaning
============================  ============  ==================================================
``ligand_positions``          [Nl, 3]       Å, input ligand conformer (heavy atoms)
``ligand_features``           [Nl, Fl]      :data:`LIGAND_FEATURES` one-hot/flags
``ligand_batch``              [Nl]          complex index of each ligand atom
``ligand_n_atoms``            [B]
``ligand_edge_index``         [2, El]       all ordered pairs within each ligand, row 0 sender j
``ligand_edge_features``      [El, Fb]      bond type one-hot (none/single/double/triple/aromatic), same ring
``receptor_positions``        [Nr, 3]       Å, C-alpha of the pocket residues
``receptor_features``         [Nr, Fr]      residue type one-hot (20 + other), burial
``receptor_batch``            [Nr]
``receptor_n_residues``       [B]
``receptor_edge_index``       [2, Er]       residue pairs closer than ``receptor_cutoff`` Å
``ligand_positions_true``     [Nl, 3]       Å, training target (optional)
============================  ============  ==================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqtool.errors import EqtoolError

__all__ = ["ComplexInput", "Receptor", "read_receptor", "select_pocket", "ligand_graph", "heavy_atom_indices",
           "collate_complexes", "LIGAND_FEATURES", "RECEPTOR_FEATURES", "BOND_FEATURES", "RESIDUES"]

ELEMENTS = (6, 7, 8, 16, 9, 17, 35, 53, 15, 5)  # C N O S F Cl Br I P B; anything else -> "other"
HYBRIDISATIONS = ("SP", "SP2", "SP3")
RESIDUES = ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET", "PHE",
            "PRO", "SER", "THR", "TRP", "TYR", "VAL")
# element one-hot + other, aromatic, in ring, degree 0-5, H count 0-4, charge -1/0/+1, hybridisation + other
LIGAND_FEATURES = len(ELEMENTS) + 1 + 2 + 6 + 5 + 3 + len(HYBRIDISATIONS) + 1
BOND_FEATURES = 5 + 1
RECEPTOR_FEATURES = len(RESIDUES) + 1 + 1
BURIAL_RADIUS = 10.0  # Å: C-alpha neighbours counted for the burial feature


@dataclass(frozen=True)
class Receptor:
    """C-alpha atoms of a protein: ``positions`` [R, 3] Å, ``residues`` [R] 3-letter names, burial [R]."""

    positions: np.ndarray
    residues: tuple[str, ...]
    burial: np.ndarray
    source: str


@dataclass(frozen=True)
class ComplexInput:
    """One ligand-in-pocket problem on the host (numpy, Å).

    Attributes:
        ligand_positions: [Nl, 3] input conformer of the heavy atoms.
        ligand_features: [Nl, Fl].
        bond_features: [Nl, Nl, Fb] pair features (zeros + "none" bond where not bonded).
        receptor_positions: [Nr, 3] pocket C-alpha.
        receptor_features: [Nr, Fr].
        ligand_positions_true: [Nl, 3] target (training only).
    """

    ligand_positions: np.ndarray
    ligand_features: np.ndarray
    bond_features: np.ndarray
    receptor_positions: np.ndarray
    receptor_features: np.ndarray
    ligand_positions_true: np.ndarray | None = None


def read_receptor(pdb: str | os.PathLike) -> Receptor:
    """C-alpha atoms of the ATOM records of a PDB file (or PDB text containing newlines).

    Takes the first model and the first alternate location; non-standard residue names are kept
    (they get the "other" residue type).

    Raises:
        EqtoolError: unreadable file or no C-alpha atom.
    """
    text, source = str(pdb), "receptor"
    if "\n" not in text:
        source = text
        try:
            text = Path(pdb).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise EqtoolError(f"cannot read receptor ({e.strerror or e})", source=source) from None
    pos, names, seen = [], [], set()
    for line in text.splitlines():
        if line.startswith("ENDMDL"):
            break
        if not line.startswith("ATOM") or line[12:16].strip() != "CA" or line[16] not in " A":
            continue
        key = (line[21], line[22:27])
        if key in seen:
            continue
        try:
            xyz = [float(line[30:38]), float(line[38:46]), float(line[46:54])]
        except ValueError:
            raise EqtoolError(f"bad coordinates in line {line.rstrip()!r}", source=source) from None
        seen.add(key)
        pos.append(xyz)
        names.append(line[17:20].strip())
    if not pos:
        raise EqtoolError("no protein C-alpha atoms (ATOM records named CA) found", source=source)
    xyz = np.asarray(pos, dtype=np.float64)
    if not np.isfinite(xyz).all():
        raise EqtoolError("non-finite receptor coordinates", source=source)
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    burial = ((d < BURIAL_RADIUS).sum(1) - 1).astype(np.float64)
    return Receptor(xyz, tuple(names), burial, source)


def select_pocket(receptor: Receptor, center: np.ndarray | None, radius: float,
                  min_residues: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Pocket residues: C-alpha within ``radius`` Å of ``center`` (all residues if ``center`` is None).

    Returns:
        ``(positions [Nr, 3] Å, features [Nr, RECEPTOR_FEATURES])``.

    Raises:
        EqtoolError: fewer than ``min_residues`` residues near the centre (an empty box).
    """
    keep = np.ones(len(receptor.residues), dtype=bool)
    if center is not None:
        c = np.asarray(center, dtype=np.float64).reshape(3)
        keep = np.linalg.norm(receptor.positions - c, axis=1) <= radius
        if keep.sum() < min_residues:
            raise EqtoolError(f"only {int(keep.sum())} residues within {radius:g} Å of the pocket centre "
                              f"{np.round(c, 2).tolist()}: is the box on the protein?",
                              source=receptor.source)
    idx = np.flatnonzero(keep)
    feats = np.zeros((len(idx), RECEPTOR_FEATURES))
    for row, i in enumerate(idx):
        name = receptor.residues[i]
        feats[row, RESIDUES.index(name) if name in RESIDUES else len(RESIDUES)] = 1.0
    feats[:, -1] = receptor.burial[idx] / 20.0
    return receptor.positions[idx].copy(), feats


def heavy_atom_indices(mol) -> np.ndarray:
    """Indices of the non-hydrogen atoms of an RDKit molecule, in atom order."""
    return np.array([a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1], dtype=np.int64)


def ligand_graph(mol) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-atom features ``[Nl, LIGAND_FEATURES]`` and pair features ``[Nl, Nl, BOND_FEATURES]``."""
    heavy = heavy_atom_indices(mol)
    pos = {int(a): i for i, a in enumerate(heavy)}
    feats = np.zeros((len(heavy), LIGAND_FEATURES))
    for i, idx in enumerate(heavy):
        atom = mol.GetAtomWithIdx(int(idx))
        z = atom.GetAtomicNum()
        feats[i, ELEMENTS.index(z) if z in ELEMENTS else len(ELEMENTS)] = 1.0
        col = len(ELEMENTS) + 1
        feats[i, col] = float(atom.GetIsAromatic())
        feats[i, col + 1] = float(atom.IsInRing())
        col += 2
        heavy_degree = sum(1 for n in atom.GetNeighbors() if n.GetAtomicNum() > 1)
        feats[i, col + min(heavy_degree, 5)] = 1.0
        col += 6
        feats[i, col + min(atom.GetTotalNumHs(includeNeighbors=True), 4)] = 1.0
        col += 5
        feats[i, col + int(np.clip(atom.GetFormalCharge(), -1, 1)) + 1] = 1.0
        col += 3
        hyb = str(atom.GetHybridization())
        feats[i, col + (HYBRIDISATIONS.index(hyb) if hyb in HYBRIDISATIONS else len(HYBRIDISATIONS))] = 1.0
    bonds = np.zeros((len(heavy), len(heavy), BOND_FEATURES))
    bonds[:, :, 0] = 1.0  # "no bond"
    ring_info = mol.GetRingInfo()
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if a not in pos or b not in pos:
            continue
        i, j = pos[a], pos[b]
        kind = 4 if bond.GetIsAromatic() else {1.0: 1, 2.0: 2, 3.0: 3}.get(bond.GetBondTypeAsDouble(), 1)
        for p, q in ((i, j), (j, i)):
            bonds[p, q, 0] = 0.0
            bonds[p, q, kind] = 1.0
            bonds[p, q, 5] = float(ring_info.NumBondRings(bond.GetIdx()) > 0)
    return feats, bonds


def _pairs(n: int, offset: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = i != j
    return np.stack([j[keep], i[keep]]) + offset  # [2, n(n-1)] sender j, receiver i


def collate_complexes(items: list[ComplexInput], receptor_cutoff: float = 15.0, dtype=None) -> dict:
    """Concatenate complexes into the model's flat batch dict (see the module docstring)."""
    import torch

    dtype = dtype or torch.get_default_dtype()
    lig_e, lig_ef, rec_e = [], [], []
    lo = ro = 0
    for it in items:
        n, r = len(it.ligand_positions), len(it.receptor_positions)
        e = _pairs(n, 0)
        lig_e.append(e + lo)
        lig_ef.append(it.bond_features[e[1], e[0]])
        d = np.linalg.norm(it.receptor_positions[:, None] - it.receptor_positions[None], axis=-1)
        i, j = np.nonzero((d < receptor_cutoff) & ~np.eye(r, dtype=bool))
        rec_e.append(np.stack([j, i]) + ro)
        lo, ro = lo + n, ro + r

    def cat(xs):
        return torch.from_numpy(np.concatenate(xs)).to(dtype)

    n_l = torch.tensor([len(it.ligand_positions) for it in items], dtype=torch.long)
    n_r = torch.tensor([len(it.receptor_positions) for it in items], dtype=torch.long)
    out = {
        "ligand_positions": cat([it.ligand_positions for it in items]),
        "ligand_features": cat([it.ligand_features for it in items]),
        "ligand_batch": torch.repeat_interleave(torch.arange(len(items)), n_l),
        "ligand_n_atoms": n_l,
        "ligand_edge_index": torch.from_numpy(np.concatenate(lig_e, axis=1)).long(),
        "ligand_edge_features": cat(lig_ef),
        "receptor_positions": cat([it.receptor_positions for it in items]),
        "receptor_features": cat([it.receptor_features for it in items]),
        "receptor_batch": torch.repeat_interleave(torch.arange(len(items)), n_r),
        "receptor_n_residues": n_r,
        "receptor_edge_index": torch.from_numpy(np.concatenate(rec_e, axis=1)).long(),
    }
    if all(it.ligand_positions_true is not None for it in items):
        out["ligand_positions_true"] = cat([it.ligand_positions_true for it in items])
    return out
