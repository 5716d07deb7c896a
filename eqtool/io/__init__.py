"""Read and write atomic structures as :class:`~eqtool.data.graph.AtomGraph` lists.

Units: lengths Å, energies eV, forces eV/Å, stress eV/Å³ with ASE's sign (stored 3x3).
Every user-fixable problem raises :class:`~eqtool.errors.EqtoolError` naming the file and,
where known, the frame (0-based) and line (1-based); every write is atomic.

Readable formats (by extension, or ``format=``):

=============================  =====================  ==================================
extension / name               ``format``             reader
=============================  =====================  ==================================
.xyz .extxyz                   extxyz, xyz            ASE (frame layout checked first)
.cif                           cif / pymatgen-cif     ASE / pymatgen ``CifParser``
.vasp .poscar POSCAR* CONTCAR*  vasp, poscar          ASE
.pdb                           pdb                    ASE
.traj                          traj                   ASE
.db                            db                     ASE database
.sdf .mol .mol2                sdf, mol, mol2         RDKit (H kept, 3D conformer, bonds)
.smi .smiles                   smiles-file            one SMILES per line -> 3D (RDKit)
(a SMILES string)              smiles                 RDKit ETKDG + MMFF
=============================  =====================  ==================================

Any other ASE format name may be given explicitly as ``format=``.
Writable: extxyz (.xyz/.extxyz), cif, poscar (.vasp/.poscar/POSCAR*), sdf (.sdf/.mol),
sdf-v3000, traj.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError
from eqtool.io.atomic import atomic_write
from eqtool.io.pymatgen import from_pymatgen, to_pymatgen
from eqtool.io.rdkit import DEFAULT_SEED, from_rdkit, to_rdkit

__all__ = ["read_structures", "write_structures", "to_pymatgen", "from_pymatgen", "to_rdkit",
           "from_rdkit", "atomic_write", "READ_FORMATS", "WRITE_FORMATS"]

_READ_EXT = {".xyz": "extxyz", ".extxyz": "extxyz", ".cif": "cif", ".vasp": "vasp",
             ".poscar": "vasp", ".pdb": "pdb", ".traj": "traj", ".db": "db", ".sdf": "sdf",
             ".mol": "mol", ".mol2": "mol2", ".smi": "smiles-file", ".smiles": "smiles-file"}
_ALIASES = {"xyz": "extxyz", "poscar": "vasp", "contcar": "vasp", "proteindatabank": "pdb"}
_ASE_NAMES = {"extxyz": "extxyz", "cif": "cif", "vasp": "vasp", "pdb": "proteindatabank",
              "traj": "traj", "db": "db"}
READ_FORMATS = ("extxyz", "xyz", "cif", "pymatgen-cif", "vasp", "poscar", "pdb", "traj", "db",
                "sdf", "mol", "mol2", "smiles", "smiles-file")

_WRITE_EXT = {".xyz": "extxyz", ".extxyz": "extxyz", ".cif": "cif", ".vasp": "poscar",
              ".poscar": "poscar", ".sdf": "sdf", ".mol": "sdf", ".traj": "traj"}
WRITE_FORMATS = ("extxyz", "cif", "poscar", "sdf", "sdf-v3000", "traj")


# ------------------------------------------------------------------------------------ index
def _selector(index, source: str):
    """``index`` (``":"``, ``"1:10:2"``, ``"-1"``, int or slice) -> ``select(n) -> list[int]``."""
    if isinstance(index, str):
        text = index.strip()
        try:
            if ":" in text:
                parts = [int(p) if p.strip() else None for p in text.split(":")]
                if len(parts) > 3:
                    raise ValueError
                index = slice(*parts)
            else:
                index = int(text)
        except ValueError:
            raise EqtoolError(f"bad frame index {index!r}; use e.g. ':', '0', '-1', '2:10:2'",
                              source) from None
    if isinstance(index, slice):
        if index.step == 0:
            raise EqtoolError("frame index step cannot be 0", source)
        return lambda n: list(range(n))[index]
    if isinstance(index, int) and not isinstance(index, bool):
        def select(n: int) -> list[int]:
            if not -n <= index < n:
                raise EqtoolError(f"frame {index} requested but the file has {n} frame(s)",
                                  source)
            return [index % n]
        return select
    raise EqtoolError(f"bad frame index {index!r}; use a string, int or slice", source)


# ------------------------------------------------------------------------------------- read
def _read_format(path: Path, format: str | None) -> str:
    if format is not None:
        fmt = _ALIASES.get(format.lower(), format.lower())
        if fmt in READ_FORMATS:
            return fmt
        from ase.io.formats import ioformats

        if format in ioformats and ioformats[format].can_read:
            return "ase:" + format
        raise EqtoolError(f"unknown structure format {format!r}; known: "
                          f"{', '.join(READ_FORMATS)} or any ASE format name", str(path))
    name = path.name.upper()
    if name.startswith(("POSCAR", "CONTCAR")):
        return "vasp"
    fmt = _READ_EXT.get(path.suffix.lower())
    if fmt is None:
        raise EqtoolError(f"unknown structure file extension {path.suffix or '(none)'!r}; "
                          f"known: {', '.join(sorted(_READ_EXT))}, POSCAR/CONTCAR, or pass "
                          "format=...", str(path))
    return fmt


def _looks_like_path(text: str) -> bool:
    p = Path(text)
    return (p.suffix.lower() in _READ_EXT or p.name.upper().startswith(("POSCAR", "CONTCAR"))
            or text.endswith(("/", os.sep)))


def _read_smiles_file(path: Path, select, seed: int) -> list[AtomGraph]:
    from eqtool.io.rdkit import smiles_to_graph

    entries = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            entries.append((lineno, line.split()[0]))
    if not entries:
        raise EqtoolError("file is empty (no SMILES lines)", str(path))
    graphs = []
    for f in select(len(entries)):
        lineno, smiles = entries[f]
        try:
            graph = smiles_to_graph(smiles, seed=seed)
        except EqtoolError as exc:
            raise EqtoolError(exc.message, str(path), f"frame {f}, line {lineno}") from None
        graph.source = f"{path}@{f}"
        graphs.append(graph)
    return graphs


def _read_file(path: Path, index, format: str | None, seed: int) -> list[AtomGraph]:
    if path.is_dir():
        raise EqtoolError("is a folder, expected a structure file", str(path))
    fmt = _read_format(path, format)
    select = _selector(index, str(path))
    if fmt in ("sdf", "mol", "mol2"):
        from eqtool.io.rdkit import read_rdkit

        return read_rdkit(path, select, fmt)
    if fmt == "pymatgen-cif":
        from eqtool.io.pymatgen import read_pymatgen_cif

        return read_pymatgen_cif(path, select)
    if fmt == "smiles-file":
        return _read_smiles_file(path, select, seed)
    from eqtool.io.ase import read_ase

    ase_format = fmt[4:] if fmt.startswith("ase:") else _ASE_NAMES[fmt]
    return read_ase(path, select, ase_format)


def _read_one(source, index, format: str | None, seed: int, position: int) -> list[AtomGraph]:
    if isinstance(source, AtomGraph):
        return [source]
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        fmt = None if format is None else _ALIASES.get(format.lower(), format.lower())
        if fmt == "smiles" or (fmt is None and isinstance(source, str)
                               and not os.path.exists(text) and not _looks_like_path(text)):
            from eqtool.io.rdkit import smiles_to_graph

            if fmt is None and ("\n" in text or not text.strip()):
                raise EqtoolError(f"{text[:40]!r} is no file and not a SMILES string",
                                  "read_structures")
            try:
                return [smiles_to_graph(text.strip(), seed=seed)]
            except EqtoolError as exc:
                if fmt == "smiles":
                    raise
                raise EqtoolError(f"no such file, and not a valid SMILES ({exc.message})",
                                  text) from None
        path = Path(text)
        if not path.exists():
            raise EqtoolError("no such file", text)
        return _read_file(path, index, format, seed)
    module = type(source).__module__
    if module.startswith("ase"):
        from eqtool.io.ase import graph_from_atoms

        return [graph_from_atoms(source, f"ase.Atoms@{position}")]
    if module.startswith("pymatgen"):
        return [from_pymatgen(source, source=f"{type(source).__name__}@{position}")]
    if module.startswith("rdkit"):
        return [from_rdkit(source, source=f"rdkit.Mol@{position}")]
    raise EqtoolError(f"cannot read structures from a {type(source).__name__}; give a path, a "
                      "SMILES string, ase.Atoms, a pymatgen Structure/Molecule or an RDKit Mol",
                      "read_structures")


def read_structures(source, index=":", format: str | None = None, *,
                    seed: int = DEFAULT_SEED) -> list[AtomGraph]:
    """Read structures into validated :class:`AtomGraph` objects.

    Args:
        source: a path (str/Path); a SMILES string (anything that is not an existing path and
            does not look like a structure file name, or any string with ``format="smiles"``);
            an ``ase.Atoms``; a pymatgen ``Structure``/``Molecule``; an RDKit ``Mol`` with a 3D
            conformer; or a list of those.
        index: frames to take from each file: ``":"`` (all), ``"-1"``, ``"2:10:2"``, an int or
            a slice; ignored for in-memory objects and SMILES.
        format: force a reader (see the module docstring); None = by extension.
        seed: random seed of the ETKDG embedding for SMILES.

    Returns:
        one graph per frame, ``graph.source == "<path>@<frame>"`` (frame = 0-based index in the
        file), ``"smiles:<SMILES>@0"`` for SMILES, ``"<type>@<position in list>"`` for objects.

    Raises:
        EqtoolError: missing/empty/garbled file, unknown format, unknown element, NaN/inf
            coordinates, overlapping atoms (< 0.1 Å), zero-volume periodic cell, bad SMILES.
    """
    items = source if isinstance(source, (list, tuple)) else [source]
    graphs: list[AtomGraph] = []
    for position, item in enumerate(items):
        graphs.extend(_read_one(item, index, format, seed, position))
    return graphs


# ------------------------------------------------------------------------------------ write
def _write_format(path: Path, format: str | None) -> str:
    if format is not None:
        fmt = {"xyz": "extxyz", "vasp": "poscar", "contcar": "poscar", "mol": "sdf"}.get(
            format.lower(), format.lower())
        if fmt not in WRITE_FORMATS:
            raise EqtoolError(f"cannot write format {format!r}; writable: "
                              f"{', '.join(WRITE_FORMATS)}", str(path))
        return fmt
    if path.name.upper().startswith(("POSCAR", "CONTCAR")):
        return "poscar"
    fmt = _WRITE_EXT.get(path.suffix.lower())
    if fmt is None:
        raise EqtoolError(f"cannot tell the output format from extension "
                          f"{path.suffix or '(none)'!r}; use one of "
                          f"{', '.join(sorted(_WRITE_EXT))} or pass format=...", str(path))
    return fmt


def write_structures(path: str | os.PathLike, graphs: AtomGraph | Sequence[AtomGraph],
                     format: str | None = None) -> None:
    """Write graphs to ``path`` atomically (temp file in the same folder, then rename).

    Formats: ``extxyz`` (exact float64; energy/forces/stress/energies/charges/magmoms labels
    as ASE results), ``cif``, ``poscar`` (exactly one structure), ``sdf`` (V2000, 1e-4 Å) /
    ``sdf-v3000`` (1e-6 Å) with bonds from ``info["bonds"]`` or perceived and the energy as the
    ``energy`` property, ``traj`` (ASE trajectory, exact). CIF and POSCAR need a 3D cell.

    Raises:
        EqtoolError: missing output folder, unknown format, no graphs, several graphs for
            POSCAR, a molecule without a cell for CIF/POSCAR, a periodic structure for SDF.
    """
    path = Path(path)
    graphs = [graphs] if isinstance(graphs, AtomGraph) else list(graphs)
    fmt = _write_format(path, format)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise EqtoolError(f"output folder {str(folder)!r} does not exist", str(path))
    if not graphs:
        raise EqtoolError("no structures to write", str(path))
    if fmt in ("cif", "poscar"):
        if fmt == "poscar" and len(graphs) != 1:
            raise EqtoolError(f"POSCAR holds one structure, got {len(graphs)}; write extxyz or "
                              "traj for many", str(path))
        for k, g in enumerate(graphs):
            if abs(float(np.linalg.det(g.cell))) < 1e-9:
                raise EqtoolError(f"{fmt.upper()} needs a 3D cell, structure {k} has none",
                                  str(path), f"frame {k}")
    if fmt == "extxyz":
        from eqtool.io.ase import write_extxyz

        write_extxyz(path, graphs)
    elif fmt in ("sdf", "sdf-v3000"):
        from eqtool.io.rdkit import write_sdf

        write_sdf(path, graphs, v3000=fmt == "sdf-v3000")
    else:
        from eqtool.io.ase import write_ase

        write_ase(path, graphs, {"cif": "cif", "poscar": "vasp", "traj": "traj"}[fmt])
