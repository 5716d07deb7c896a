"""The search box: a centre and edge lengths in Å, from a reference ligand, numbers or the receptor."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from eqtool.errors import EqtoolError

__all__ = ["Box", "box_around", "box_from_ligand_file", "blind_box", "check_box_has_receptor"]

PADDING = 4.0  # Å added on each side of a reference ligand (smina's autobox_add)
MIN_SIZE = 10.0  # Å, smallest edge of an automatic box
MAX_SIZE = 126.0  # Å, Vina's grid limit at 0.375 Å spacing is far above this; keep maps affordable


@dataclass(frozen=True)
class Box:
    """An axis-aligned search box.

    Attributes:
        center: ``[3]`` Å, Cartesian centre.
        size: ``[3]`` Å, edge lengths along x, y, z (all > 0).
    """

    center: tuple[float, float, float]
    size: tuple[float, float, float]

    def __post_init__(self):
        c = np.asarray(self.center, dtype=float)
        s = np.asarray(self.size, dtype=float)
        if c.shape != (3,) or s.shape != (3,):
            raise EqtoolError(f"box centre and size need 3 numbers each, got {c.size} and {s.size}",
                              source="box")
        if not (np.isfinite(c).all() and np.isfinite(s).all()):
            raise EqtoolError("box centre and size must be finite numbers", source="box")
        if (s <= 0).any():
            raise EqtoolError(f"empty box: every edge must be > 0 Å, got size {tuple(s.tolist())}",
                              source="--size")
        if (s > MAX_SIZE).any():
            raise EqtoolError(f"box edge {s.max():.1f} Å is above {MAX_SIZE:.0f} Å; Vina maps that large "
                              "take too long and too much memory", source="--size")
        object.__setattr__(self, "center", tuple(float(x) for x in c))
        object.__setattr__(self, "size", tuple(float(x) for x in s))

    def contains(self, positions: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """``[N]`` bool: which of ``positions [N, 3]`` Å lie inside the box grown by ``margin`` Å."""
        half = np.asarray(self.size) / 2 + margin
        return (np.abs(np.asarray(positions) - np.asarray(self.center)) <= half).all(axis=1)

    def __str__(self) -> str:
        c = ", ".join(f"{x:.2f}" for x in self.center)
        s = " x ".join(f"{x:.1f}" for x in self.size)
        return f"centre ({c}) Å, size {s} Å"


def box_around(positions: np.ndarray, padding: float = PADDING, min_size: float = MIN_SIZE) -> Box:
    """The bounding box of ``positions [N, 3]`` Å grown by ``padding`` Å per side, edges >= ``min_size``."""
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    if len(pos) == 0:
        raise EqtoolError("no atoms to build a box around", source="box")
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    size = np.maximum(hi - lo + 2 * padding, min_size)
    return Box(tuple((lo + hi) / 2), tuple(size))


def box_from_ligand_file(path: str | os.PathLike, padding: float = PADDING) -> Box:
    """Box around every atom of every record of a reference ligand SDF/MOL file (``--box-from``)."""
    from rdkit import Chem

    path = str(path)
    if not os.path.isfile(path):
        raise EqtoolError("file not found", source=path)
    pos = []
    supplier = Chem.SDMolSupplier(path, sanitize=False, removeHs=False)
    for mol in supplier:
        if mol is not None and mol.GetNumConformers():
            pos.append(mol.GetConformer().GetPositions())
    if not pos:
        raise EqtoolError("no readable molecule with coordinates to define the box", source=path)
    return box_around(np.concatenate(pos), padding=padding)


def blind_box(receptor_positions: np.ndarray, padding: float = PADDING) -> Box:
    """Box around the whole receptor (``--blind``): its heavy-atom bounding box plus ``padding`` Å."""
    return box_around(receptor_positions, padding=padding)


def check_box_has_receptor(box: Box, receptor_positions: np.ndarray, source: str) -> None:
    """Raise :class:`EqtoolError` if no receptor atom lies within the box (grown by 4 Å)."""
    if not box.contains(receptor_positions, margin=4.0).any():
        raise EqtoolError(f"empty box: no receptor atom within 4 Å of the box {box}; check the "
                          "centre (same frame as the receptor file)", source=source)
