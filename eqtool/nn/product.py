"""MACE product basis as a recursive, channel-wise tensor power with element-dependent weights.

``B_1 = A``, ``B_nu = TP(B_{nu-1}, A)`` (``nu = 2..correlation``), and the output is
``m_i = sum_nu sum_paths W_nu[z_i, path, c] * B_nu,path`` restricted to the target irreps
(Batatia et al. 2022, MACE eq. (10)-(11): the body-order ``nu + 1`` features ``B_nu`` contracted
with element-dependent weights).

Why this and not MACE's symmetric contraction with generalised-CG ``U`` matrices: the ``U``
tensors of a correlation-3 product over ``l <= 3`` are ``[2L+1, 16, 16, 16, K]``; contracting them
costs ``O(16^3 K)`` per node and channel. The recursion only forms two-factor products, each a
single dense CG matmul over the few index pairs that couple (:class:`eqtool.nn.NodeTP`), so it is
cheap on CPU and simple to verify. ``B_2`` is the symmetric ``A (x) A`` (upper-triangle pairs,
antisymmetric paths dropped), so no redundant features are built.

What it spans: every coupling ``((l1 l2) L12 l3 ...) -> L`` of MACE's basis with intermediate
``L12 <= lmax_hidden`` (default: the max ``l`` of ``A``). The difference is in the weights: MACE
gives each symmetric coupling a free weight per element and channel; here a coupling's weight is
the product of per-level weights (``w_next`` of the level-2 path times ``w_out`` of the level-3
path), a factorised, lower-parameter form of the same expansion. For ``correlation`` 2 the two
coincide: one free weight per symmetric coupling, element and channel.

Initialisation follows MACE's ``SymmetricContraction``: ``w1`` ~ N(0, 1) and every level weight
~ N(0, 1) / (number of paths into the same output irrep).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from eqtool.nn.tensor_product import NodeTP

__all__ = ["ProductBasis"]


def _sum_matrix(irs_paths: list[o3.Irrep], irs_out: list[o3.Irrep]) -> torch.Tensor:
    """0/1 matrix ``[D_out, D_paths]`` that sums each path's output into its irrep."""
    d_paths, d_out = sum(ir.dim for ir in irs_paths), sum(ir.dim for ir in irs_out)
    start = {}
    col = 0
    for ir in irs_out:
        start[ir] = col
        col += ir.dim
    s = torch.zeros(d_paths, d_out)
    row = 0
    for ir in irs_paths:
        if ir in start:
            s[row: row + ir.dim, start[ir]: start[ir] + ir.dim] = torch.eye(ir.dim)
        row += ir.dim
    return s.T.contiguous()


def _fan_in(irs_paths: list[o3.Irrep]) -> torch.Tensor:
    """``[1, n_paths, 1]``: for every path, how many paths share its output irrep."""
    counts = [sum(ir == other for other in irs_paths) for ir in irs_paths]
    return torch.tensor(counts, dtype=torch.get_default_dtype()).view(1, -1, 1)


class _Level(nn.Module):
    """One level ``nu >= 2``: ``TP(B_{nu-1}, A)`` and its weights to the output / next level."""

    def __init__(self, irs_prev, irs_a, irs_target, irs_hidden, channels, num_elements, last, symmetric):
        super().__init__()
        wanted = list(irs_target) + ([] if last else [ir for ir in irs_hidden if ir not in irs_target])
        self.tp = NodeTP(irs_prev, irs_a, wanted, symmetric=symmetric)
        present = set(self.tp.irs_out)
        self.irs_next = [] if last else [ir for ir in irs_hidden if ir in present]
        self.register_buffer("sum_out", _sum_matrix(self.tp.irs_out, list(irs_target)), persistent=False)
        n = self.tp.n_paths
        # MACE's init (SymmetricContraction): N(0, 1) / (number of couplings into the same output irrep)
        self.w_out = nn.Parameter(torch.randn(num_elements, n, channels) / _fan_in(self.tp.irs_out))
        if not last:
            self.register_buffer("sum_next", _sum_matrix(self.tp.irs_out, self.irs_next), persistent=False)
            self.w_next = nn.Parameter(torch.randn(num_elements, n, channels) / _fan_in(self.tp.irs_out))
        self.last = last

    def forward(self, b, a, element_index):
        tp = self.tp(b, a)  # [N, D_paths, C]
        rows = self.tp.path_of_col
        out = self.sum_out @ (tp * self.w_out[element_index][:, rows])  # [N, D_target, C]
        if self.last:
            return out, None
        nxt = self.sum_next @ (tp * self.w_next[element_index][:, rows])  # [N, D_next, C]
        return out, nxt


class ProductBasis(nn.Module):
    """``A`` ``[N, D_A, C]`` -> ``m`` ``[N, D_target, C]`` with body order ``correlation + 1``.

    Args:
        irs_a: irreps of ``A`` (channel-uniform).
        irs_target: output irreps (each must be reachable, e.g. a subset of ``irs_a``).
        correlation: ``nu_max`` (1-3 are sensible; any ``>= 1`` works).
        channels: ``C``.
        num_elements: number of elements (weights are per element).
        lmax_hidden: truncation of the intermediate ``B_nu`` (default ``max l`` of ``irs_a``).
    """

    def __init__(self, irs_a: Sequence, irs_target: Sequence, correlation: int, channels: int,
                 num_elements: int, lmax_hidden: int | None = None):
        super().__init__()
        irs_a = [o3.Irrep(ir) for ir in irs_a]
        irs_target = [o3.Irrep(ir) for ir in irs_target]
        missing = [ir for ir in irs_target if ir not in irs_a]
        if missing:
            raise ValueError(f"target irreps {missing} are not in A's irreps {irs_a}")
        lmax = max(ir.l for ir in irs_a) if lmax_hidden is None else lmax_hidden
        irs_hidden = [o3.Irrep(l, p) for l in range(lmax + 1) for p in (1, -1)]
        self.irs_target = irs_target
        idx = []
        offs = {}
        col = 0
        for ir in irs_a:
            offs[ir] = col
            col += ir.dim
        for ir in irs_target:
            idx += list(range(offs[ir], offs[ir] + ir.dim))
        self.register_buffer("target_cols", torch.tensor(idx, dtype=torch.long), persistent=False)
        irrep_of_col = [i for i, ir in enumerate(irs_target) for _ in range(ir.dim)]
        self.register_buffer("target_irrep_of_col", torch.tensor(irrep_of_col), persistent=False)
        self.w1 = nn.Parameter(torch.randn(num_elements, len(irs_target), channels))
        levels, prev = [], irs_a
        for nu in range(2, correlation + 1):
            level = _Level(prev, irs_a, irs_target, irs_hidden, channels, num_elements,
                           last=nu == correlation, symmetric=nu == 2)
            levels.append(level)
            prev = level.irs_next
        self.levels = nn.ModuleList(levels)
        self.correlation = correlation

    def forward(self, a: torch.Tensor, element_index: torch.Tensor) -> torch.Tensor:
        w1 = self.w1[element_index][:, self.target_irrep_of_col]  # [N, D_target, C]
        out = a[:, self.target_cols] * w1
        b = a
        for level in self.levels:
            o, b = level(b, a, element_index)
            out = out + o
        return out  # [N, D_target, C]
