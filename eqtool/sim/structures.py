"""Input structures for simulations: validated by :func:`eqtool.io.read_structures`, as ``ase.Atoms``.

eqtool's host-side :class:`~eqtool.data.graph.AtomGraph` does not carry ASE constraints, so for
files ASE can read (extxyz, traj, POSCAR with selective dynamics, ...) the constraints of each
frame are read again with ASE and attached to the returned atoms: fixed atoms stay fixed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from eqtool.errors import EqtoolError

__all__ = ["read_atoms", "label_of"]


def _ase_constraints(path: str) -> list[tuple[int, list]]:
    """``(n_atoms, constraints)`` of every frame of ``path`` ([] if ASE cannot read the file)."""
    import ase.io

    try:
        images = ase.io.read(path, index=":")
    except Exception:  # not an ASE format (SDF, SMILES, ...): no constraints to carry
        return []
    images = images if isinstance(images, list) else [images]
    return [(len(atoms), [c.copy() for c in atoms.constraints]) for atoms in images]


def label_of(source: str | None, k: int) -> str:
    """Short name of structure ``k`` for tables: ``file.extxyz@3`` or ``#k``."""
    if not source:
        return f"#{k}"
    path, _, frame = source.rpartition("@")
    return f"{os.path.basename(path) or path}@{frame}" if path else source


def read_atoms(inputs: Sequence[str | os.PathLike], index=":") -> list:
    """Read every frame of every input into ``ase.Atoms`` (with constraints where the file has them).

    Each atoms object gets ``atoms.info["source"] = "<path>@<frame>"``. Raises
    :class:`EqtoolError` for missing/garbled files and invalid structures (overlapping atoms,
    NaN coordinates, unknown elements) before anything is computed.
    """
    from eqtool.io import read_structures

    if not inputs:
        raise EqtoolError("no input structures given", source="INPUT")
    out = []
    constraints: dict[str, list[tuple[int, list]]] = {}
    for item in inputs:
        graphs = read_structures(os.fspath(item), index=index)
        if not graphs:
            raise EqtoolError("no structures found", source=os.fspath(item))
        for g in graphs:
            atoms = g.to_ase()
            atoms.calc = None  # reference labels of the input are not ours to report
            src = g.source or os.fspath(item)
            atoms.info["source"] = src
            path, _, frame = src.rpartition("@")
            if path and frame.isdigit() and os.path.isfile(path):
                if path not in constraints:
                    constraints[path] = _ase_constraints(path)
                per_frame = constraints[path]
                f = int(frame)
                if f < len(per_frame) and per_frame[f][0] == len(atoms) and per_frame[f][1]:
                    atoms.set_constraint([c.copy() for c in per_frame[f][1]])
            if not np.isfinite(atoms.positions).all():  # pragma: no cover - AtomGraph checks this
                raise EqtoolError("non-finite coordinates", source=src)
            out.append(atoms)
    return out
