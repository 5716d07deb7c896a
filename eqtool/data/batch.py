"""Concatenate many :class:`AtomGraph` into one flat ``dict[str, Tensor]`` and back.

Systems are concatenated, never padded. Shapes, with ``N`` atoms, ``E`` edges, ``B`` systems:

==================  ================  ==========================================
positions           [N, 3]  float     Å
atomic_numbers      [N]     long
batch               [N]     long      system index of each atom
n_atoms             [B]     long
cell                [B, 3, 3] float   Å, row vectors
pbc                 [B, 3]  bool
edge_index          [2, E]  long      (sender, receiver), offset into the batch
edge_shift          [E, 3]  float     integer cell shifts (stored in the float dtype)
<labels>            by level          see :data:`eqtool.data.keys.FIELDS`
==================  ================  ==========================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from eqtool.data import keys as K
from eqtool.data.graph import AtomGraph

__all__ = ["collate", "split", "to_device", "batch_size"]


def _torch(value: np.ndarray, kind: str, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(value))
    if kind == "float" or (kind == "auto" and t.is_floating_point()):
        return t.to(dtype)
    if kind == "int":
        return t.long()
    if kind == "bool":
        return t.bool()
    return t


def collate(
    graphs: Sequence[AtomGraph],
    dtype: torch.dtype = torch.float64,
    cutoff: float | None = None,
    neighbor_fn=None,
    label_keys: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Batch graphs into a flat dict of tensors.

    Args:
        graphs: systems to batch; if ``cutoff`` is given, edges are (re)computed with ``neighbor_fn``.
        dtype: floating dtype of positions, cell and float labels.
        label_keys: labels to include (default: those present in every graph).
    """
    if len(graphs) == 0:
        raise ValueError("cannot collate an empty list of graphs")
    if cutoff is not None:
        graphs = [g.with_edges(cutoff, neighbor_fn) for g in graphs]
    n_atoms = np.array([g.n_atoms for g in graphs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    out: dict[str, torch.Tensor] = {
        K.POSITIONS: _torch(np.concatenate([g.positions for g in graphs]), "float", dtype),
        K.ATOMIC_NUMBERS: _torch(np.concatenate([g.atomic_numbers for g in graphs]), "int", dtype),
        K.BATCH: torch.repeat_interleave(torch.arange(len(graphs)), torch.from_numpy(n_atoms)),
        K.N_ATOMS: torch.from_numpy(n_atoms),
        K.CELL: _torch(np.stack([g.cell for g in graphs]), "float", dtype),
        K.PBC: _torch(np.stack([g.pbc for g in graphs]), "bool", dtype),
    }
    if all(g.edge_index is not None for g in graphs):
        shifted = [g.edge_index + o for g, o in zip(graphs, offsets, strict=True)]
        out[K.EDGE_INDEX] = _torch(np.concatenate(shifted, axis=1), "int", dtype)
        out[K.EDGE_SHIFT] = _torch(np.concatenate([g.edge_shift for g in graphs]), "float", dtype)
    if label_keys is None:
        label_keys = [k for k in graphs[0].labels if all(k in g.labels for g in graphs)]
    for key in label_keys:
        field = K.FIELDS.get(key, K.Field("system", "auto"))
        values = [np.asarray(g.labels[key]) for g in graphs]
        if field.level == "system":
            arr = np.stack(values)
        elif field.level in ("node", "pair", "edge"):
            arr = np.concatenate([v.reshape(v.shape[0], *v.shape[1:]) for v in values])
        else:  # pragma: no cover
            raise ValueError(f"unknown level {field.level!r} for {key!r}")
        out[key] = _torch(arr, field.dtype, dtype)
    return out


def batch_size(batch: dict[str, torch.Tensor]) -> int:
    return int(batch[K.N_ATOMS].shape[0])


def to_device(batch: dict[str, torch.Tensor], device=None, dtype: torch.dtype | None = None):
    """Move a batch to ``device`` and cast floating tensors to ``dtype``; returns a new dict."""
    out = {}
    for k, v in batch.items():
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.to(device) if device is not None else v
    return out


def split(batch: dict[str, torch.Tensor], keep_edges: bool = False) -> list[AtomGraph]:
    """Split a batch (inputs and any outputs with registered levels) back into graphs.

    Keys that are not registered and whose level cannot be inferred are dropped.
    Positions, cell and float labels come back as float64 numpy arrays.
    """
    n_atoms = batch[K.N_ATOMS].detach().cpu().numpy()
    B = len(n_atoms)
    node_off = np.concatenate([[0], np.cumsum(n_atoms)])
    pair_off = np.concatenate([[0], np.cumsum(n_atoms**2)])
    edge_sys = None
    if K.EDGE_INDEX in batch:
        ei = batch[K.EDGE_INDEX].detach().cpu().numpy()
        edge_sys = batch[K.BATCH].detach().cpu().numpy()[ei[1]]

    def np_(t):
        a = t.detach().cpu().numpy()
        return a.astype(np.float64) if a.dtype.kind == "f" else a

    arrays = {k: np_(v) for k, v in batch.items()}
    graphs = []
    for b in range(B):
        sl = slice(node_off[b], node_off[b + 1])
        labels = {}
        for key, arr in arrays.items():
            if key in K.STRUCTURE_KEYS or key in (K.BATCH, K.N_ATOMS, K.EDGE_INDEX, K.EDGE_SHIFT):
                continue
            level = K.FIELDS[key].level if key in K.FIELDS else None
            if level == "node":
                labels[key] = arr[sl]
            elif level == "system":
                labels[key] = arr[b]
            elif level == "pair":
                labels[key] = arr[pair_off[b]: pair_off[b + 1]]
            elif level == "edge" and edge_sys is not None:
                labels[key] = arr[edge_sys == b]
        g = _unchecked(arrays, sl, b, labels)
        if keep_edges and edge_sys is not None:
            m = edge_sys == b
            g.edge_index = ei[:, m] - node_off[b]
            g.edge_shift = np.rint(arrays[K.EDGE_SHIFT][m]).astype(np.int64)
        graphs.append(g)
    return graphs


def _unchecked(arrays, sl, b, labels) -> AtomGraph:
    """Build an AtomGraph from already-validated batch arrays without re-validating."""
    g = object.__new__(AtomGraph)
    g.__dict__.update(
        positions=arrays[K.POSITIONS][sl].astype(np.float64),
        atomic_numbers=arrays[K.ATOMIC_NUMBERS][sl].astype(np.int64),
        cell=arrays[K.CELL][b].astype(np.float64), pbc=arrays[K.PBC][b].astype(bool),
        labels=labels, info={}, edge_index=None, edge_shift=None, source=None,
    )
    return g
