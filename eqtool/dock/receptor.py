"""Receptor preparation: read a PDB/mmCIF (gemmi), add hydrogens and write Vina's PDBQT (meeko).

Waters are removed, alternative locations reduced to the first, hydrogens rebuilt from meeko's
residue templates. A residue without a built-in template (a cofactor, a modified residue) is an
error -- meeko would try to download its template from the PDB chemical component dictionary -- and so
is a residue whose atoms match no template (missing or distorted atoms), unless ``drop_unmatched=True``
drops such residues (they are listed in :attr:`Receptor.removed`). ``keep_hetero=True`` keeps the
residues without a template (cofactors, ions, other ligands) as rigid heavy atoms typed by element
(no hydrogens, no charges): Vina then sees their volume and hydrophobicity, not their H-bond donors.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from eqtool.dock._deps import need
from eqtool.errors import EqtoolError

__all__ = ["Receptor", "prepare_receptor"]

WATER = frozenset({"HOH", "WAT", "DOD", "H2O", "TIP", "TIP3", "SOL"})


@dataclass(frozen=True)
class Receptor:
    """A receptor ready for docking.

    Attributes:
        path: the input file (PDB, mmCIF or PDBQT), as given.
        pdbqt: rigid-receptor PDBQT text for Vina (polar hydrogens, Gasteiger charges, AD4 types).
        positions: ``[M, 3]`` Å, heavy-atom coordinates (for blind boxes and empty-box checks).
        removed: residues dropped during preparation, as ``"RES chain:num"`` strings (waters excluded).
        kept_hetero: residues without a template kept as element-typed heavy atoms.
    """

    path: str
    pdbqt: str = field(repr=False)
    positions: np.ndarray = field(repr=False)
    removed: tuple[str, ...] = ()
    kept_hetero: tuple[str, ...] = ()


def _templates():
    meeko = need("meeko")
    return meeko.ResidueChemTemplates.create_from_defaults()


def _known_names(templates) -> set[str]:
    return set(templates.residue_templates) | set(templates.ambiguous)


def _read_structure(path: str):
    gemmi = need("gemmi")
    try:
        st = gemmi.read_structure(path)
    except (RuntimeError, ValueError, OSError) as exc:
        raise EqtoolError(f"cannot read the receptor: {exc}", source=path) from exc
    if len(st) == 0 or not any(len(res) for ch in st[0] for res in ch):
        raise EqtoolError("no atoms found; expected a protein structure in PDB or mmCIF format", source=path)
    while len(st) > 1:  # NMR ensembles: first model
        del st[len(st) - 1]
    st.setup_entities()
    st.remove_alternative_conformations()
    st.remove_hydrogens()
    st.remove_waters()
    st.remove_empty_chains()
    return st


def _label(chain: str, res) -> str:
    return f"{res.name} {chain}:{res.seqid.num}{res.seqid.icode.strip()}"


def _shown(labels) -> str:
    return ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")


def _delete(st, wanted) -> None:
    """Delete residues for which ``wanted(chain_name, residue)`` is true."""
    for ch in st[0]:
        for i in reversed(range(len(ch))):
            if wanted(ch.name, ch[i]):
                del ch[i]
    st.remove_empty_chains()


# AutoDock atom types for hetero atoms kept without a template: no H, so N is "N" (not an acceptor
# in Vina's XS typing) and O is "OA" (acceptor); Vina derives carbon polarity from bonded neighbours.
_AD_TYPE = {"C": "C", "N": "N", "O": "OA", "S": "S", "P": "P", "F": "F", "Cl": "Cl", "Br": "Br", "I": "I",
            "Mg": "Mg", "Ca": "Ca", "Mn": "Mn", "Fe": "Fe", "Zn": "Zn"}


def _hetero_pdbqt(chain: str, res, serial: int) -> list[str] | None:
    """PDBQT lines for a residue's heavy atoms, or None if an element has no AutoDock type."""
    lines = []
    for atom in res:
        ad = _AD_TYPE.get(atom.element.name)
        if ad is None:
            return None
        name = atom.name if len(atom.name) == 4 else f" {atom.name:<3}"
        head = f"HETATM{(serial + len(lines)) % 100000:5d} {name:<4} {res.name:>3} {chain[:1]:1}"
        xyz = f"{atom.pos.x:8.3f}{atom.pos.y:8.3f}{atom.pos.z:8.3f}"
        lines.append(f"{head}{res.seqid.num % 10000:4d}    {xyz}  1.00  0.00    {0.0:+6.3f} {ad:<2}\n")
    return lines


def _drop_unknown(st, known: set[str], drop: bool, keep: bool, path: str) -> tuple[list[str], list[str], str]:
    """Take residues without a template out of ``st``: ``(dropped, kept, pdbqt lines of the kept)``."""
    labels = [_label(ch.name, res) for ch in st[0] for res in ch if res.name not in known]
    if labels and not (drop or keep):
        raise EqtoolError(f"residues without a built-in template: {_shown(labels)}; preparing them would "
                          "need a template download from the PDB chemical component dictionary. Remove them "
                          "from the file, or pass --keep-hetero (keep them as element-typed atoms) or "
                          "--drop-unmatched (drop them)", source=path)
    dropped, kept, lines = [], [], []
    for ch in st[0]:
        for res in ch:
            if res.name in known:
                continue
            block = _hetero_pdbqt(ch.name, res, 90000 + len(lines)) if keep else None
            if block is None:
                dropped.append(_label(ch.name, res))
            else:
                kept.append(_label(ch.name, res))
                lines += block
    if dropped and not drop:
        raise EqtoolError(f"residues with elements Vina cannot type: {_shown(dropped)}; remove them or pass "
                          "--drop-unmatched", source=path)
    _delete(st, lambda _c, res: res.name not in known)
    return dropped, kept, "".join(lines)


_UNBUILDABLE = re.compile(r"residue (\S+) corresponding to key (\S+):(\S+)")


def _polymer(st, templates, drop: bool, path: str, removed: list[str]):
    """meeko ``Polymer`` of ``st``; with ``drop``, residues RDKit cannot build are deleted and retried."""
    quiet = logging.getLogger("meeko")  # meeko logs template-matching reports as warnings
    level = quiet.level
    try:
        quiet.setLevel(logging.ERROR)
        return _polymer_attempts(st, templates, drop, path, removed)
    finally:
        quiet.setLevel(level)


def _polymer_attempts(st, templates, drop: bool, path: str, removed: list[str]):
    meeko = need("meeko")
    from rdkit import rdBase

    for _attempt in range(50):
        pdb = st.make_pdb_string()
        try:
            # meeko prints template-matching reports on stdout; keep our stdout for results
            with (warnings.catch_warnings(), rdBase.BlockLogs(),
                  contextlib.redirect_stdout(io.StringIO())):
                warnings.simplefilter("ignore")
                return meeko.Polymer.from_pdb_string(pdb, templates, meeko.MoleculePreparation(),
                                                     allow_bad_res=drop)
        except meeko.PolymerCreationError as exc:
            msg = " ".join(str(getattr(exc, "error", exc)).split())
            msg = msg if len(msg) < 300 else msg[:300] + " ..."
            raise EqtoolError(f"meeko cannot prepare the receptor: {msg} (--drop-unmatched drops residues "
                              "that match no template)", source=path) from exc
        except RuntimeError as exc:
            found = _UNBUILDABLE.search(str(exc))
            if not found:
                raise EqtoolError(f"meeko cannot prepare the receptor: {exc}", source=path) from exc
            name, chain, num = found.groups()
            if not drop:
                raise EqtoolError(f"residue {name} {chain}:{num} has impossible bonding (missing or "
                                  "distorted atoms); fix it or pass --drop-unmatched to drop it",
                                  source=path) from exc
            removed.append(f"{name} {chain}:{num}")
            _delete(st, lambda c, res, key=f"{chain}:{num}": _label(c, res).split(" ")[1] == key)
    raise EqtoolError("too many residues that cannot be built; check the structure", source=path)


def _pdbqt_positions(pdbqt: str) -> np.ndarray:
    rows = [(float(ln[30:38]), float(ln[38:46]), float(ln[46:54])) for ln in pdbqt.splitlines()
            if ln.startswith(("ATOM", "HETATM")) and ln[77:79].strip() not in ("H", "HD", "HS")]
    return np.asarray(rows, dtype=float).reshape(-1, 3)


def prepare_receptor(path: str | os.PathLike, drop_unmatched: bool = False, keep_hetero: bool = False
                     ) -> Receptor:
    """Read and prepare a receptor for Vina.

    Args:
        path: protein structure: ``.pdb``/``.ent``/``.cif`` (prepared here) or ``.pdbqt`` (used as is).
        drop_unmatched: drop residues meeko has no template for (ligands, cofactors, modified residues)
            and residues that match none (missing or distorted atoms) instead of failing.
        keep_hetero: keep residues without a template as rigid element-typed heavy atoms (see above).

    Raises:
        EqtoolError: missing or unreadable file, no atoms, residues that would need a template download,
            residues that match no template (e.g. missing heavy atoms), with the residue named.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise EqtoolError("file not found", source=path)
    if path.lower().endswith(".pdbqt"):
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        pos = _pdbqt_positions(text)
        if len(pos) == 0:
            raise EqtoolError("no ATOM/HETATM records in the PDBQT file", source=path)
        return Receptor(path, text, pos)

    meeko = need("meeko")
    st = _read_structure(path)
    templates = _templates()
    removed, kept, hetero = _drop_unknown(st, _known_names(templates), drop_unmatched, keep_hetero, path)
    if not any(len(res) for ch in st[0] for res in ch):
        raise EqtoolError("no protein residues left after removing waters and unknown residues", source=path)
    polymer = _polymer(st, templates, drop_unmatched, path, removed)
    valid = polymer.get_valid_monomers()
    removed += [f"{m.input_resname} {key}" for key, m in polymer.monomers.items() if key not in valid]
    try:
        rigid, _flex = meeko.PDBQTWriterLegacy.write_string_from_polymer(polymer)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise EqtoolError(f"meeko cannot write the receptor PDBQT: {exc}", source=path) from exc
    rigid += hetero
    pos = _pdbqt_positions(rigid)
    if len(pos) == 0:
        raise EqtoolError("no receptor atoms could be typed for Vina", source=path)
    return Receptor(path, rigid, pos, tuple(removed), tuple(kept))
