"""Neighbour lists behind one injectable function.

A neighbour-list function has the signature ``fn(positions, cell, pbc, cutoff)`` and returns
``(edge_index, edge_shift)`` for ONE system:

* ``positions`` ``[N, 3]`` Å, ``cell`` ``[3, 3]`` Å (row vectors), ``pbc`` ``[3]`` bool
* ``edge_index`` ``[2, E]`` int64, row 0 = sender ``j``, row 1 = receiver ``i``
* ``edge_shift`` ``[E, 3]`` int64 integer cell shifts, such that the edge vector is
  ``positions[j] - positions[i] + edge_shift @ cell`` and its length is ``< cutoff``.

The list is full (both ``i->j`` and ``j->i``), excludes self-pairs at zero shift, and includes an
atom's own periodic images when the cell is smaller than the cutoff. Non-periodic directions never
get a shift. Inputs may be numpy arrays or torch tensors; the output has the same array type.
"""

from __future__ import annotations

import numpy as np

__all__ = ["neighbor_list", "vesin_neighbor_list"]


def vesin_neighbor_list(positions, cell, pbc, cutoff: float):
    """CPU neighbour list with vesin (numpy in, numpy out). See the module docstring."""
    from vesin import NeighborList

    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    if len(positions) == 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    box = np.where(pbc[:, None], cell, 0.0) if not pbc.all() else cell
    if not pbc.any():
        box = np.zeros((3, 3))
    i, j, s = NeighborList(cutoff=float(cutoff), full_list=True).compute(
        points=positions, box=box, periodic=pbc.tolist(), quantities="ijS"
    )
    edge_index = np.stack([j, i]).astype(np.int64)  # sender j -> receiver i
    return edge_index, np.asarray(s, dtype=np.int64).reshape(-1, 3)


def neighbor_list(positions, cell, pbc, cutoff: float):
    """Default neighbour list: vesin for numpy/CPU inputs."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(positions, torch.Tensor):
        ei, sh = vesin_neighbor_list(
            positions.detach().cpu().numpy(), torch.as_tensor(cell).detach().cpu().numpy(),
            torch.as_tensor(pbc).cpu().numpy(), cutoff,
        )
        dev = positions.device
        return torch.from_numpy(ei).to(dev), torch.from_numpy(sh).to(dev)
    return vesin_neighbor_list(positions, cell, pbc, cutoff)
