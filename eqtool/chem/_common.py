"""Shared helper: accept an AtomGraph or a ``(positions, atomic_numbers)`` pair."""

from __future__ import annotations

import numpy as np

from eqtool.errors import EqtoolError


def as_arrays(structure) -> tuple[np.ndarray, np.ndarray]:
    """``(positions [N, 3] float64 Å, atomic_numbers [N] int64)`` of one molecule.

    Accepts an :class:`~eqtool.data.graph.AtomGraph` (must be non-periodic) or a pair.
    """
    if hasattr(structure, "positions") and hasattr(structure, "atomic_numbers"):
        if getattr(structure, "is_periodic", False):
            raise EqtoolError("bond perception and molecule metrics need non-periodic molecules",
                              getattr(structure, "source", None))
        pos, z = structure.positions, structure.atomic_numbers
    else:
        try:
            pos, z = structure
        except (TypeError, ValueError):
            raise TypeError("expected an AtomGraph or a (positions, atomic_numbers) pair, got "
                            f"{type(structure).__name__}") from None
    pos = np.asarray(pos, dtype=np.float64)
    z = np.asarray(z).astype(np.int64)
    if pos.ndim != 2 or pos.shape[1] != 3 or z.shape != (len(pos),):
        raise EqtoolError(f"positions {pos.shape} and atomic_numbers {z.shape} must be [N, 3] and [N]",
                          getattr(structure, "source", None))
    return pos, z
