"""Ligand input: SDF (many records), SMILES files and SMILES strings -> RDKit molecules with a 3D conformer.

A ligand that cannot be used (a molblock RDKit cannot parse, a kekulisation failure, a SMILES RDKit
rejects, no 3D conformer) becomes a :class:`Ligand` with ``error`` set, so a batch goes on; only a
missing or unsupported *file* stops the whole run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from eqtool.errors import EqtoolError

__all__ = ["Ligand", "read_ligands", "prepare_ligand", "random_pose", "SDF_SUFFIXES", "SMILES_SUFFIXES"]

SDF_SUFFIXES = (".sdf", ".sd", ".mol")
SMILES_SUFFIXES = (".smi", ".smiles", ".txt")
_FILE_LIKE = SDF_SUFFIXES + SMILES_SUFFIXES + (".mol2", ".pdb", ".pdbqt", ".xyz", ".csv", ".gz")


@dataclass
class Ligand:
    """One input ligand.

    Attributes:
        name: title (SDF ``_Name``, SMILES-file name column, else ``<file>#<k>`` or the SMILES).
        index: 1-based position in the whole input (all ``--ligand`` values together).
        source: where it came from, e.g. ``"ligands.sdf (record 3)"`` or ``"SMILES argument"``.
        mol: the sanitised RDKit molecule (as read; no hydrogens added yet), or None on error.
        error: why it cannot be docked, one line; None if usable.
    """

    name: str
    index: int
    source: str
    mol: object | None = field(default=None, repr=False)
    error: str | None = None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _sanitize(mol) -> str | None:
    """Sanitise in place; return RDKit's reason (e.g. a kekulisation failure) or None."""
    from rdkit import Chem

    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:  # noqa: BLE001 -- RDKit raises several unrelated types; the text is the message
        text = _one_line(exc)
        if "kekulize" in text.lower():
            return f"RDKit cannot kekulise the molecule ({text}); check aromatic rings and charges"
        return f"RDKit rejects the molecule: {text}"
    return None


def _check_single(mol) -> str | None:
    from rdkit import Chem

    n = len(Chem.GetMolFrags(mol))
    if n > 1:
        return f"{n} disconnected fragments (salt or mixture?); give one molecule per record"
    if mol.GetNumAtoms() == 0:
        return "no atoms"
    return None


def _sdf_records(text: str) -> Iterator[str]:
    block: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("$$$$"):
            yield "".join(block)
            block = []
        else:
            block.append(line)
    if "".join(block).strip():
        yield "".join(block)


def _from_sdf(path: str, start: int) -> list[Ligand]:
    from rdkit import Chem, rdBase

    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    stem = os.path.basename(path)
    out = []
    for k, block in enumerate(_sdf_records(text), start=1):
        where = f"{stem} (record {k})"
        lig = Ligand(name=f"{stem}#{k}", index=start + len(out), source=where)
        with rdBase.BlockLogs():
            mol = Chem.MolFromMolBlock(block, sanitize=False, removeHs=False, strictParsing=False)
        if mol is None:
            lig.error = "RDKit cannot parse this molblock (bad counts line, atom or bond block)"
            out.append(lig)
            continue
        if mol.HasProp("_Name") and mol.GetProp("_Name").strip():
            lig.name = _one_line(mol.GetProp("_Name"))
        with rdBase.BlockLogs():
            lig.error = _sanitize(mol) or _check_single(mol)
        lig.mol = None if lig.error else mol
        out.append(lig)
    if not out:
        raise EqtoolError("no molecule records in the SDF file", source=path)
    return out


def _from_smiles(smiles: str, name: str, index: int, source: str) -> Ligand:
    from rdkit import Chem, rdBase

    lig = Ligand(name=name, index=index, source=source)
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        if mol is None:
            lig.error = f"RDKit cannot parse the SMILES {smiles!r} (syntax error)"
            return lig
        lig.error = _sanitize(mol) or _check_single(mol)
    lig.mol = None if lig.error else mol
    return lig


def _from_smiles_file(path: str, start: int) -> list[Ligand]:
    stem = os.path.basename(path)
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts or parts[0].startswith("#") or parts[0].lower() == "smiles":
                continue
            name = " ".join(parts[1:]) or f"{stem}#{len(out) + 1}"
            out.append(_from_smiles(parts[0], name, start + len(out), f"{stem} (line {lineno})"))
    if not out:
        raise EqtoolError("no SMILES lines in the file", source=path)
    return out


def read_ligands(specs: Sequence[str]) -> list[Ligand]:
    """Read ligands from files and SMILES strings, in order.

    Args:
        specs: each an SDF/MOL file (``.sdf``, ``.sd``, ``.mol``; many records), a SMILES file
            (``.smi``, ``.smiles``, ``.txt``: ``SMILES [name]`` per line) or a SMILES string.

    Returns:
        one :class:`Ligand` per record/line/string; unusable ones carry ``error``.

    Raises:
        EqtoolError: a file that does not exist or has an unsupported suffix, an empty file.
    """
    ligands: list[Ligand] = []
    for spec in specs:
        spec = str(spec)
        lower = spec.lower()
        if os.path.isfile(spec):
            if lower.endswith(SDF_SUFFIXES):
                ligands += _from_sdf(spec, len(ligands) + 1)
            elif lower.endswith(SMILES_SUFFIXES):
                ligands += _from_smiles_file(spec, len(ligands) + 1)
            else:
                raise EqtoolError("unsupported ligand file; give .sdf/.sd/.mol, .smi/.smiles/.txt or a "
                                  "SMILES string", source=spec)
        elif lower.endswith(_FILE_LIKE) or os.sep in spec:
            raise EqtoolError("ligand file not found", source=spec)
        else:
            n = len(ligands) + 1
            ligands.append(_from_smiles(spec.strip(), _one_line(spec)[:60], n, "SMILES argument"))
    if not ligands:
        raise EqtoolError("no ligands given", source="--ligand")
    return ligands


def _has_3d(mol) -> bool:
    if mol.GetNumConformers() == 0:
        return False
    pos = mol.GetConformer().GetPositions()
    return bool(np.abs(pos[:, 2]).max() > 1e-3) and bool(np.ptp(pos, axis=0).min() > 1e-3 or len(pos) < 4)


def prepare_ligand(mol, seed: int = 0, new_conformer: bool = False):
    """A copy of ``mol`` with explicit hydrogens and a 3D conformer (Å).

    Args:
        mol: sanitised RDKit molecule.
        seed: RDKit embedding seed (used when a conformer is generated).
        new_conformer: generate an RDKit (ETKDGv3 + MMFF) conformer even if ``mol`` has 3D coordinates.

    Returns:
        ``(mol_with_h, error)``: the molecule, or None and a one-line reason.
    """
    from rdkit import Chem, rdBase
    from rdkit.Chem import AllChem

    with rdBase.BlockLogs():
        if _has_3d(mol) and not new_conformer:
            first = mol.GetConformer().GetId()
            return Chem.AddHs(Chem.Mol(mol, False, first), addCoords=True), None
        molh = Chem.AddHs(mol)
        molh.RemoveAllConformers()
        params = AllChem.ETKDGv3()
        params.randomSeed = int(seed) & 0x7FFFFFFF
        if AllChem.EmbedMolecule(molh, params) != 0:
            params.useRandomCoords = True
            if AllChem.EmbedMolecule(molh, params) != 0:
                return None, "RDKit could not generate a 3D conformer"
        try:
            if AllChem.MMFFHasAllMoleculeParams(molh):
                AllChem.MMFFOptimizeMolecule(molh, maxIters=500)
            else:
                AllChem.UFFOptimizeMolecule(molh, maxIters=500)
        except (RuntimeError, ValueError):  # keep the ETKDG geometry
            pass
    return molh, None


def random_pose(mol, center: np.ndarray, rng: np.random.Generator, shift: float = 0.0):
    """A copy of ``mol`` rigidly moved: uniform random rotation about its centroid, centroid at ``center``.

    Args:
        mol: RDKit molecule with a conformer.
        center: ``[3]`` Å, where the centroid goes.
        rng: numpy generator (seeded by the caller).
        shift: Å, standard deviation of an extra random offset of the centroid.
    """
    from rdkit import Chem
    from scipy.spatial.transform import Rotation

    out = Chem.Mol(mol)
    conf = out.GetConformer()
    pos = conf.GetPositions()  # [N, 3] Å
    rot = Rotation.random(random_state=rng).as_matrix()
    new = (pos - pos.mean(axis=0)) @ rot.T + np.asarray(center) + rng.normal(0.0, shift, 3) * (shift > 0)
    for i, p in enumerate(new):
        conf.SetAtomPosition(i, p.tolist())
    return out
