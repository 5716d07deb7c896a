"""Neighbour lists behind one injectable function.

A neighbour-list function has the signature ``fn(positions, cell, pbc, cutoff)`` and returns
``(edge_index, edge_shift)`` for ONE system:

* ``positions`` ``[N, 3]`` Å, ``cell`` ``[3, 3]`` Å (row vectors), ``pbc`` ``[3]`` bool
* ``edge_index`` ``[2, E]`` int64, row 0 = sender ``j``, row 1 = receiver ``i``
* ``edge_shift`` ``[E, 3]`` int64 integer cell shifts, such that the edge vector is
  ``positions[j] - positions[i] + edge_shift @ cell`` and its length is ``< cutoff``.

The list is full (both ``i->j`` and ``j->i``), excludes self-pairs at zero shift, and includes an
atom's own periodic images when the cell is smaller than the cutoff. Non-periodic directions never
get a shift (their cell vector may be zero). Positions need not be wrapped into the cell. Inputs
may be numpy arrays or torch tensors; the output has the same array type (and device).

Implementations:

* :func:`vesin_neighbor_list` -- vesin, CPU, numpy in/out (the default for numpy and CPU tensors).
* :func:`torch_neighbor_list` -- pure torch, any device (the default for GPU tensors); dense
  ``O(N^2 * n_images)`` distances, chunked to bound memory.
* :func:`neighbor_list` -- dispatches between the two (``method="auto"|"vesin"|"torch"``).
* :func:`batch_neighbor_list` -- edges for a flat batch dict (see :mod:`eqtool.data.batch`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from eqtool.data import keys as K
from eqtool.errors import EqtoolError

__all__ = ["neighbor_list", "vesin_neighbor_list", "torch_neighbor_list", "batch_neighbor_list"]

METHODS = ("auto", "vesin", "torch")
_CHUNK = 1 << 22  # max (receiver, sender-image) pairs held at once in the torch path
_MAX_IMAGES = 1_000_000  # refuse cells so small/flat that the image grid explodes
_FLAT = 1e-8  # |det| / prod(|a_k|) below this is a degenerate periodic cell


def _check_cutoff(cutoff) -> float:
    cutoff = float(cutoff)
    if not math.isfinite(cutoff) or cutoff <= 0:
        raise EqtoolError(f"cutoff must be a positive finite number of Å, got {cutoff}",
                          source="neighbor list")
    return cutoff


def vesin_neighbor_list(positions, cell, pbc, cutoff: float):
    """CPU neighbour list with vesin (numpy in, numpy out). See the module docstring."""
    from vesin import NeighborList

    cutoff = _check_cutoff(cutoff)
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    if len(positions) == 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    box = np.where(pbc[:, None], cell, 0.0) if not pbc.all() else cell
    if not pbc.any():
        box = np.zeros((3, 3))
    i, j, s = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=positions, box=box, periodic=pbc.tolist(), quantities="ijS"
    )
    edge_index = np.stack([j, i]).astype(np.int64)  # sender j -> receiver i
    return edge_index, np.asarray(s, dtype=np.int64).reshape(-1, 3)


def _periodic_frame(cell: torch.Tensor, pbc: list[bool]) -> torch.Tensor:
    """Cell ``[3, 3]`` whose non-periodic rows are replaced by an orthonormal completion.

    The replacement rows are unit vectors orthogonal to the periodic rows (and to each other), so
    the frame is invertible even when the non-periodic cell vectors are zero, and the plane heights
    of the periodic directions are those of the periodic sub-lattice alone.
    """
    periodic = cell[pbc]  # [p, 3]
    lengths = periodic.norm(dim=1)
    if bool((lengths <= 0).any()):
        raise EqtoolError("periodic cell vector has zero length", source="neighbor list")
    _, sv, vh = torch.linalg.svd(periodic, full_matrices=True)  # vh [3, 3]
    if float(sv.prod() / lengths.prod()) < _FLAT:
        raise EqtoolError("degenerate (flat) periodic cell: its periodic vectors are linearly "
                          "dependent", source="neighbor list")
    frame = cell.clone()
    missing = [k for k in range(3) if not pbc[k]]
    if missing:
        frame[missing] = vh[len(periodic):]
    return frame


def torch_neighbor_list(positions, cell, pbc, cutoff: float):
    """Pure-torch neighbour list (tensors in, tensors out, on ``positions.device``).

    Same contract as the module docstring. Positions are wrapped into the cell along periodic
    directions, then every receiver is compared with every sender in every image ``n`` with
    ``|n_k| <= ceil(cutoff / h_k)``, where ``h_k = V / |a_i x a_j|`` is the distance between the
    lattice planes spanned by the other two cell vectors. Distances are computed in float64.

    Args:
        positions: ``[N, 3]`` Å.
        cell: ``[3, 3]`` Å, row vectors (ignored, may be zero, if ``pbc`` is all False).
        pbc: ``[3]`` bool.
        cutoff: Å.

    Returns:
        ``edge_index`` ``[2, E]`` int64 (sender, receiver), ``edge_shift`` ``[E, 3]`` int64, sorted
        by receiver then sender.
    """
    cutoff = _check_cutoff(cutoff)
    positions = torch.as_tensor(positions)
    device = positions.device
    pos = positions.detach().to(torch.float64)  # [N, 3]
    cell = torch.as_tensor(cell).detach().to(device=device, dtype=torch.float64).reshape(3, 3)
    pbc_list = [bool(p) for p in torch.as_tensor(pbc).reshape(3).tolist()]
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise EqtoolError(f"positions must have shape [N, 3], got {list(positions.shape)}",
                          source="neighbor list")
    n = pos.shape[0]
    empty = (torch.zeros((2, 0), dtype=torch.long, device=device),
             torch.zeros((0, 3), dtype=torch.long, device=device))
    if n == 0:
        return empty
    if not bool(torch.isfinite(pos).all()):
        raise EqtoolError("positions contain NaN or inf", source="neighbor list")

    wrap = torch.zeros((n, 3), dtype=torch.long, device=device)  # [N, 3] cells moved by wrapping
    reach = [0, 0, 0]  # images needed per direction
    frame = None
    if any(pbc_list):
        if not bool(torch.isfinite(cell).all()):
            raise EqtoolError("cell contains NaN or inf", source="neighbor list")
        frame = _periodic_frame(cell, pbc_list)
        volume = torch.linalg.det(frame).abs()
        frac = torch.linalg.solve(frame.T, pos.T).T  # [N, 3] fractional coordinates
        mask = torch.tensor(pbc_list, device=device)
        wrap = torch.where(mask, torch.floor(frac), torch.zeros_like(frac)).long()
        pos = pos - wrap.to(pos.dtype) @ frame
        for k in range(3):
            if pbc_list[k]:
                a, b = frame[(k + 1) % 3], frame[(k + 2) % 3]
                height = float(volume / torch.linalg.cross(a, b).norm())
                reach[k] = math.ceil(cutoff / height)
        n_images = math.prod(2 * m + 1 for m in reach)
        if n_images > _MAX_IMAGES:
            raise EqtoolError(f"cutoff {cutoff} Å needs {n_images} periodic images of this cell "
                              f"(plane heights too small); use a supercell", source="neighbor list")
    images = torch.cartesian_prod(
        *[torch.arange(-m, m + 1, dtype=torch.long, device=device) for m in reach])  # [M, 3]
    zero_img = images.shape[0] // 2  # symmetric ranges: the middle image is n = (0, 0, 0)
    offsets = images.to(pos.dtype) @ frame if frame is not None else images.to(pos.dtype)  # [M, 3] Å
    # senders in all images, flattened as s = m * N + j
    senders = (pos[None, :, :] + offsets[:, None, :]).reshape(-1, 3)  # [M*N, 3]
    n_src = senders.shape[0]
    cut2 = cutoff * cutoff

    recv_list, send_list = [], []
    src_block = min(n_src, _CHUNK)
    rows = max(1, _CHUNK // src_block)
    for s0 in range(0, n_src, src_block):
        src = senders[s0:s0 + src_block]  # [S, 3]
        s_idx = torch.arange(s0, s0 + src.shape[0], device=device)
        self_col = torch.where(s_idx // n == zero_img, s_idx % n, -1)  # [S] receiver excluded
        for r0 in range(0, n, rows):
            recv = pos[r0:r0 + rows]  # [R, 3]
            d2 = (src[None, :, :] - recv[:, None, :]).square().sum(-1)  # [R, S]
            r_idx = torch.arange(r0, r0 + recv.shape[0], device=device)
            keep = (d2 < cut2) & (self_col[None, :] != r_idx[:, None])
            r, s = keep.nonzero(as_tuple=True)
            recv_list.append(r + r0)
            send_list.append(s + s0)
    if not recv_list:
        return empty
    receiver = torch.cat(recv_list)
    flat = torch.cat(send_list)
    image, sender = flat // n, flat % n
    # edge vector: pos'[j] - pos'[i] + n @ A with pos' = pos - w @ A  ->  S = n - w_j + w_i
    shift = images[image] - wrap[sender] + wrap[receiver]
    order = torch.sort(receiver * n + sender, stable=True).indices
    edge_index = torch.stack([sender[order], receiver[order]])
    return edge_index, shift[order]


def neighbor_list(positions, cell, pbc, cutoff: float, method: str = "auto"):
    """Neighbour list for one system, dispatched on the input type.

    ``method="auto"``: numpy arrays and CPU tensors go to vesin, tensors on any other device to
    :func:`torch_neighbor_list`. ``"vesin"`` or ``"torch"`` force one implementation. The output
    has the input's array type (and device). See the module docstring for the contract.
    """
    if method not in METHODS:
        raise EqtoolError(f"unknown neighbour-list method {method!r}; expected one of "
                          f"{', '.join(METHODS)}", source="neighbor list")
    if isinstance(positions, torch.Tensor):
        device = positions.device
        if method == "torch" or (method == "auto" and device.type != "cpu"):
            return torch_neighbor_list(positions, cell, pbc, cutoff)
        ei, sh = vesin_neighbor_list(
            positions.detach().cpu().numpy(), torch.as_tensor(cell).detach().cpu().numpy(),
            torch.as_tensor(pbc).cpu().numpy(), cutoff,
        )
        return torch.from_numpy(ei).to(device), torch.from_numpy(sh).to(device)
    if method == "torch":
        ei, sh = torch_neighbor_list(torch.as_tensor(np.asarray(positions, dtype=np.float64)),
                                     torch.as_tensor(np.asarray(cell, dtype=np.float64)),
                                     torch.as_tensor(np.asarray(pbc, dtype=bool)), cutoff)
        return ei.numpy(), sh.numpy()
    return vesin_neighbor_list(positions, cell, pbc, cutoff)


def batch_neighbor_list(batch: dict[str, torch.Tensor], cutoff: float, neighbor_fn=None):
    """Edges for every system of a flat batch dict, with node offsets applied.

    Used by MD/relaxation to rebuild ``batch["edge_index"]``/``batch["edge_shift"]`` after the
    positions moved. Gradients do not flow through the list (positions are detached).

    Args:
        batch: needs ``positions`` ``[N, 3]`` Å, ``cell`` ``[B, 3, 3]`` Å, ``pbc`` ``[B, 3]`` bool
            and ``n_atoms`` ``[B]`` long (systems stored consecutively).
        cutoff: Å.
        neighbor_fn: per-system function ``fn(positions, cell, pbc, cutoff)``; default
            :func:`neighbor_list` (vesin on CPU, torch on GPU).

    Returns:
        ``edge_index`` ``[2, E]`` long (sender, receiver), offset into the batch, and
        ``edge_shift`` ``[E, 3]`` integer shifts in the positions' float dtype (as ``collate``),
        both on the positions' device.
    """
    for key in (K.POSITIONS, K.CELL, K.PBC, K.N_ATOMS):
        if key not in batch:
            raise EqtoolError(f"batch has no {key!r}", source="batch neighbour list")
    fn = neighbor_list if neighbor_fn is None else neighbor_fn
    pos = batch[K.POSITIONS].detach()
    cell, pbc = batch[K.CELL].detach(), batch[K.PBC]
    device, dtype = pos.device, pos.dtype
    counts = [int(c) for c in batch[K.N_ATOMS].tolist()]
    if sum(counts) != pos.shape[0]:
        raise EqtoolError(f"n_atoms sums to {sum(counts)} but positions has {pos.shape[0]} rows",
                          source="batch neighbour list")
    indices = [torch.zeros((2, 0), dtype=torch.long, device=device)]
    shifts = [torch.zeros((0, 3), dtype=dtype, device=device)]
    start = 0
    for b, count in enumerate(counts):
        if count > 0:
            ei, sh = fn(pos[start:start + count], cell[b], pbc[b], cutoff)
            indices.append(torch.as_tensor(ei).to(device=device, dtype=torch.long) + start)
            shifts.append(torch.as_tensor(sh).to(device=device, dtype=dtype))
        start += count
    return torch.cat(indices, dim=1), torch.cat(shifts)
