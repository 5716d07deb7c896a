"""QHNet's tensor-product expansion: equivariant features -> AO blocks in PySCF order.

A block between a row atom with shells ``a`` (angular momentum ``l_a``) and a column atom with
shells ``b`` is, shell pair by shell pair (Yu et al., QHNet, ICML 2023, eq. 7),

    H[a, b]_{k_a k_b} = sum_L sum_m  C^{l_a l_b L}_{k_a k_b m}  c^{(a, b, L)}_m

where ``c^{(a,b,L)}`` is an irrep ``L`` (parity ``(-1)^(l_a + l_b)``) of the pair/node feature and
``C`` the Clebsch-Gordan coefficients rotated into PySCF's component order
(:func:`eqtool.models.hamiltonian.basis.change_of_basis`). Every block is predicted in the full
layout :data:`~eqtool.models.hamiltonian.basis.FULL_SHELLS` (14 AOs); elements with fewer shells
take their AOs out of it afterwards. There are exactly as many coefficients as matrix entries (196).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from eqtool.models.hamiltonian.basis import FULL_SHELLS, MAX_AO, change_of_basis
from eqtool.nn.tensor_product import clebsch_gordan

__all__ = ["BlockExpansion", "expansion_irreps"]


def _paths(shells: Sequence[int]):
    """``{irrep: [(row AO start, l_a, col AO start, l_b), ...]}`` of all shell-pair couplings."""
    starts = [sum(2 * l + 1 for l in shells[:i]) for i in range(len(shells))]
    out: dict[o3.Irrep, list] = {}
    for sa, la in zip(starts, shells, strict=True):
        for sb, lb in zip(starts, shells, strict=True):
            for L in range(abs(la - lb), la + lb + 1):
                out.setdefault(o3.Irrep(L, (-1) ** (la + lb)), []).append((sa, la, sb, lb))
    return dict(sorted(out.items(), key=lambda kv: (kv[0].l, -kv[0].p)))


def expansion_irreps(shells: Sequence[int] = FULL_SHELLS) -> list[o3.Irrep]:
    """Irreps a feature needs to fill every block of ``shells`` x ``shells`` (0e, 1o, 1e, 2e, ...)."""
    return list(_paths(shells))


class BlockExpansion(nn.Module):
    """``forward(x [P, D, C], types [P]) -> [P, 14, 14]`` blocks in PySCF AO order (full layout).

    ``x`` has irreps ``irs_in`` (repeats allowed, in any order). Per output irrep ``L`` a linear map
    ``W_L`` ``[k_L * C, n_L]`` (``k_L`` copies of ``L`` in the input, ``n_L`` coupling paths, fan-in
    scaled) gives the coefficients, then each path's coefficients get a per-``type`` scale (and the
    ``0e`` ones a per-type bias: the element (pair) dependent offsets of the blocks), and the
    constant ``[196, 196]`` matrix of CG coefficients turns coefficients into the block.

    Args:
        irs_in: irreps of the ``D`` rows of ``x``.
        channels: ``C``.
        num_types: number of block types (elements for diagonal blocks, element pairs for others).
    """

    def __init__(self, irs_in: Sequence, channels: int, num_types: int):
        super().__init__()
        irs_in = [o3.Irrep(ir) for ir in irs_in]
        offsets = [0]
        for ir in irs_in:
            offsets.append(offsets[-1] + ir.dim)
        paths = _paths(FULL_SHELLS)
        rows_total = sum(ir.dim * len(p) for ir, p in paths.items())
        assert rows_total == MAX_AO * MAX_AO
        expand = torch.zeros(rows_total, MAX_AO * MAX_AO, dtype=torch.float64)
        self.groups: list[tuple[int, int, int]] = []  # (dim, n_paths, k copies in x)
        self.weights = nn.ParameterList()
        rows_all: list[int] = []  # x's rows, group after group: one index_select, then a split
        row, n_scalar = 0, 0
        for ir, plist in paths.items():
            rows_x = [r for i, ir_x in enumerate(irs_in) if ir_x == ir
                      for r in range(offsets[i], offsets[i + 1])]
            k = len(rows_x) // ir.dim
            rows_all += rows_x
            self.groups.append((ir.dim, len(plist), k))
            self.weights.append(nn.Parameter(torch.randn(k * channels, len(plist))))
            for q, (sa, la, sb, lb) in enumerate(plist):
                cg = clebsch_gordan(o3.Irrep(la, (-1) ** la), o3.Irrep(lb, (-1) ** lb), ir)  # [da, db, dL]
                cg = torch.einsum("ijm,ik,jl->klm", cg, change_of_basis(la), change_of_basis(lb))
                for m in range(ir.dim):
                    blk = torch.zeros(MAX_AO, MAX_AO, dtype=torch.float64)
                    blk[sa: sa + 2 * la + 1, sb: sb + 2 * lb + 1] = cg[:, :, m]
                    expand[row + m * len(plist) + q] = blk.reshape(-1)
            row += ir.dim * len(plist)
            if ir == o3.Irrep("0e"):
                n_scalar = len(plist)
        # one gather: the backward of a per-group index_select would zero-fill a copy of x per group
        self.register_buffer("rows", torch.tensor(rows_all, dtype=torch.long), persistent=False)
        self.channels = channels
        self.n_scalar = n_scalar
        self.n_coef = rows_total
        n_paths_total = sum(n for _, n, _ in self.groups)
        self.type_scale = nn.Parameter(torch.ones(num_types, n_paths_total))
        self.type_bias = nn.Parameter(torch.zeros(num_types, n_scalar))
        self._expand64 = expand
        self._cache: dict = {}

    def _expand(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.dtype, like.device)
        if key not in self._cache:  # float64 master, cast on demand (not a buffer: see NodeTP)
            self._cache[key] = self._expand64.to(device=like.device, dtype=like.dtype)
        return self._cache[key]

    def forward(self, x: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        P, C = x.shape[0], self.channels
        scale = self.type_scale[types]  # [P, n_paths_total]
        xs = x.index_select(1, self.rows).split([d * k for d, _, k in self.groups], dim=1)
        coefs, start = [], 0
        for g, ((d, n, k), w) in enumerate(zip(self.groups, self.weights, strict=True)):
            s = scale[:, start: start + n]  # [P, n]
            start += n
            if k == 0:
                coefs.append(x.new_zeros(P, d * n))
                continue
            xg = xs[g].view(P, k, d, C).transpose(1, 2).reshape(P, d, k * C)  # [P, d, k*C]
            c = (xg @ w) * (1.0 / math.sqrt(k * C))  # [P, d, n]
            c = c * s[:, None, :]
            if g == 0 and d == 1:  # 0e: per-type offsets
                c = c + self.type_bias[types][:, None, :]
            coefs.append(c.reshape(P, d * n))
        coef = torch.cat(coefs, dim=1)  # [P, 196]
        return (coef @ self._expand(x)).view(P, MAX_AO, MAX_AO)  # [P, 14, 14]
