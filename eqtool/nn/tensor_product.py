"""Channel-wise ("uvu"/"uuu") tensor products on channel-uniform features ``[.., D, C]``.

Both products precompute their Clebsch-Gordan matrices (e3nn ``o3.wigner_3j`` times
``sqrt(2 l3 + 1)``, "component" normalisation) at build time, so a forward pass is a few batched
matmuls and elementwise products -- no Python loop over edges or atoms (``NodeTP`` loops over its
input-irrep pairs, at most ``(lmax + 1)^2`` of them).
Path outputs are ordered grouped by output irrep, the copies of each irrep contiguous (what
:class:`eqtool.nn.linear.IrrepsLinear` expects).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

__all__ = ["clebsch_gordan", "EdgeConvTP", "NodeTP"]


def clebsch_gordan(ir1, ir2, ir3) -> torch.Tensor:
    """``[d1, d2, d3]`` coupling coefficients, zero if parity/triangle forbid the path."""
    ir1, ir2, ir3 = o3.Irrep(ir1), o3.Irrep(ir2), o3.Irrep(ir3)
    if ir3 not in ir1 * ir2:
        return torch.zeros(ir1.dim, ir2.dim, ir3.dim, dtype=torch.float64)
    return o3.wigner_3j(ir1.l, ir2.l, ir3.l, dtype=torch.float64) * math.sqrt(ir3.dim)


class _Constants:
    """Float64 master copies of fixed coupling tensors, cast on demand and cached per dtype/device.

    Deliberately NOT buffers: ``module.to(float32)`` would round them, and a later ``.to(float64)``
    could not restore the digits that equivariance to 1e-10 in float64 needs. Not saved in
    ``state_dict`` either (they are rebuilt from the irreps).
    """

    def __init__(self):
        self.master: dict[str, torch.Tensor] = {}
        self.cache: dict[tuple, torch.Tensor] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        self.master[name] = value.to(torch.float64).contiguous()

    def get(self, name: str, like: torch.Tensor) -> torch.Tensor:
        key = (name, like.dtype, like.device)
        t = self.cache.get(key)
        if t is None:
            t = self.cache[key] = self.master[name].to(device=like.device, dtype=like.dtype)
        return t


def _offsets(irs) -> list[int]:
    out = [0]
    for ir in irs:
        out.append(out[-1] + ir.dim)
    return out


class EdgeConvTP(nn.Module):
    """Convolution ``A_i = sum_j  R_ij (x) [h_j (x) Y(r_ij)]``: "uvu" paths with external weights.

    ``h_j`` ``[E, DX, C]`` are sender features, ``Y`` ``[E, DY]`` edge spherical harmonics and
    ``w`` ``[E, n_paths, C]`` per-edge, per-channel path weights (from a radial MLP). Messages are
    scatter-summed to receivers: output ``[N, D_paths, C]``, irreps :attr:`irs_out` (one entry per
    path, grouped by output irrep). The paths are split into segments of equal (output irrep,
    source irrep); per segment ``G = Y @ CG`` ``[E, n, d3, d1]`` couples the edge harmonics once,
    then ``m[e, p] = G[e, p] @ (w[e, p] * h_j[e])`` (a broadcast product when ``d1 = 1``) and
    ``index_add_`` to the receivers.

    Args:
        irs_node: node irreps (channel-uniform) of ``h``.
        lmax: maximum ``l`` of ``Y`` (``Y`` holds ``l = 0..lmax``, parity ``(-1)^l``).
        irs_target: allowed output irreps; paths to other irreps are dropped (MACE
            ``tp_out_irreps_with_instructions``).
    """

    def __init__(self, irs_node: Sequence, lmax: int, irs_target: Sequence):
        super().__init__()
        irs_x = [o3.Irrep(ir) for ir in irs_node]
        irs_y = [o3.Irrep(l, (-1) ** l) for l in range(lmax + 1)]
        ox, oy = _offsets(irs_x), _offsets(irs_y)
        self.dy = oy[-1]
        self.consts = _Constants()
        paths, segments = [], []
        for ir3 in (o3.Irrep(ir) for ir in irs_target):
            for i1, ir1 in enumerate(irs_x):
                seg = [(i1, i2, ir3) for i2, ir2 in enumerate(irs_y) if ir3 in ir1 * ir2]
                if not seg:
                    continue
                cg = torch.zeros(self.dy, len(seg) * ir3.dim, ir1.dim, dtype=torch.float64)
                for p, (_, i2, _) in enumerate(seg):
                    c = clebsch_gordan(ir1, irs_y[i2], ir3)  # [d1, d2, d3]
                    cg[oy[i2]: oy[i2 + 1], p * ir3.dim: (p + 1) * ir3.dim, :] = c.permute(1, 2, 0)
                # (x rows, path start, n paths, d3, d1, cg index)
                segments.append((ox[i1], len(paths), len(seg), ir3.dim, ir1.dim, len(segments)))
                self.consts.add(f"cg_{len(segments) - 1}", cg.reshape(self.dy, -1))
                paths += seg
        self.paths = paths
        self.irs_out = [ir3 for _, _, ir3 in paths]
        self.segments = segments
        self.n_paths = len(paths)
        self.x_dims = [ir.dim for ir in irs_x]
        self.x_index = {o: i for i, o in enumerate(ox[:-1])}

    def forward(self, h_j: torch.Tensor, Y: torch.Tensor, w: torch.Tensor, receiver: torch.Tensor,
                num_nodes: int) -> torch.Tensor:
        E, _, C = h_j.shape
        # split (not slice): the backward of split is one cat, that of a slice a full zero-fill
        xs = h_j.split(self.x_dims, dim=1)  # [E, d1, C] per node irrep
        ws = w.split([n for _, _, n, _, _, _ in self.segments], dim=1)  # [E, n, C] per segment
        outs = []
        for (x0, _, n, d3, d1, g), w_seg in zip(self.segments, ws, strict=False):
            G = (Y @ self.consts.get(f"cg_{g}", Y)).view(E * n, d3, d1)  # [E*n, d3, d1]
            x = xs[self.x_index[x0]]  # [E, d1, C]
            # weight the (small) source first, then couple: 2-4x faster than weighting the output
            if d1 == 1:
                xw = (x * w_seg).view(E * n, 1, C)  # [E*n, 1, C]
                m = G * xw  # [E*n, d3, C]
            else:
                xw = (x.unsqueeze(1) * w_seg.unsqueeze(2)).view(E * n, d1, C)  # [E*n, d1, C]
                m = torch.bmm(G, xw)  # [E*n, d3, C]
            m = m.view(E, n * d3, C)
            outs.append(m.new_zeros(num_nodes, n * d3, C).index_add_(0, receiver, m))  # [N, n*d3, C]
        return torch.cat(outs, dim=1)  # [N, D_paths, C]


class NodeTP(nn.Module):
    """Channel-wise ("uuu") product of two node features ``x`` ``[N, D1, C]``, ``y`` ``[N, D2, C]``.

    Returns the unweighted path outputs ``[N, D_paths, C]`` (irreps :attr:`irs_out`, grouped by
    output irrep). Implemented per input-irrep pair ``(i1, i2)`` ("block") in an irrep-major layout:
    the outer product ``x_i1 (x) y_i2`` ``[d1 d2, N C]`` times the stacked CG matrices of that pair's
    paths ``[sum d3, d1 d2]`` (one plain matmul), then one row gather into the output order -- about
    2x faster than one dense CG matrix over all index pairs, which is mostly zeros. ``symmetric``
    products use the dense form over the upper-triangle index pairs ``(I, J)``.

    ``copies = k`` (``C`` a multiple of ``k``): the channels of ``x`` and ``y`` are cut into ``k`` blocks
    that act as ``k`` copies of their irreps (``C / k`` channels each) and every copy of ``x`` meets
    every copy of ``y``: the paths are those of ``irs1 * k`` with ``irs2 * k`` (:attr:`paths`, ``k^2``
    times as many), and the paths of ``x``'s copy ``a`` fill channel block ``a`` of the output, whose
    rows (:attr:`irs_out`) are those of one copy: the paths with ``y``'s copy 0, then copy 1, ... per
    output irrep.

    Args:
        irs1, irs2: irreps of ``x`` and ``y`` (of one copy).
        irs_target: allowed output irreps, in output order.
        symmetric: ``x`` and ``y`` are the same tensor: keep only ``l1 <= l2`` paths, drop the
            paths that vanish by antisymmetry and use upper-triangle pairs ``I <= J`` only.
        copies: ``k`` above (not with ``symmetric``).
    """

    def __init__(self, irs1: Sequence, irs2: Sequence, irs_target: Sequence, symmetric: bool = False,
                 copies: int = 1):
        super().__init__()
        k = self.copies = int(copies)
        if k < 1 or (symmetric and k > 1):
            raise ValueError(f"copies must be >= 1 (1 for a symmetric product), got {copies}")
        irs1 = [o3.Irrep(ir) for ir in irs1]
        irs2 = [o3.Irrep(ir) for ir in irs2]
        o1, o2 = _offsets(irs1), _offsets(irs2)
        n1 = len(irs1)
        all1, all2 = irs1 * k, irs2 * k  # logical irreps of the k copies
        paths = []
        for ir3 in (o3.Irrep(ir) for ir in irs_target):
            for i1, ir1 in enumerate(all1):
                for i2, ir2 in enumerate(all2):
                    if ir3 not in ir1 * ir2:
                        continue
                    if symmetric and (i2 < i1 or (i1 == i2 and (2 * ir1.l - ir3.l) % 2 == 1)):
                        continue
                    paths.append((i1, i2, ir3))
        self.paths = paths
        self.irs_out = [ir3 for i1, _, ir3 in paths if i1 < n1]  # the rows of one channel block
        self.n_paths = len(paths)
        d_out = sum(ir.dim for ir in self.irs_out)
        full = torch.zeros(o1[-1], o2[-1], d_out, dtype=torch.float64) if symmetric else None
        self.consts = _Constants()
        row = [0] * k  # next output row per channel block
        self.path_rows = []  # (channel block, first row, last row + 1) per path
        self.blocks: dict[tuple[int, int], list[int]] = {}  # paths per input pair (i1, i2), in order
        for p, (i1, i2, ir3) in enumerate(paths):
            cg = clebsch_gordan(all1[i1], all2[i2], ir3)  # [d1, d2, d3]
            a = i1 // n1  # x's copy: the output's channel block
            if symmetric:
                full[o1[i1]: o1[i1 + 1], o2[i2]: o2[i2 + 1], row[a]: row[a] + ir3.dim] = cg
            self.consts.add(f"path_{p}", cg.reshape(-1, ir3.dim).T)  # [d3, d1 d2] for the block form
            self.blocks.setdefault((i1, i2), []).append(p)
            self.path_rows.append((a, row[a], row[a] + ir3.dim))
            row[a] += ir3.dim
        if symmetric:  # the dense form over upper-triangle index pairs (I <= J)
            # x_I x_J = x_J x_I: fold the lower triangle onto the upper one
            f = full.permute(2, 0, 1)  # [D_paths, D1, D1]
            f = f.triu(1) + f.transpose(1, 2).triu(1) + torch.diag_embed(f.diagonal(dim1=1, dim2=2))
            full = f.permute(1, 2, 0)
            used = full.abs().sum(-1) > 1e-12  # [D1, D2]
            I, J = used.nonzero(as_tuple=True)
            self.register_buffer("I", I, persistent=False)
            self.register_buffer("J", J, persistent=False)
            self.consts.add("cg_t", full[I, J].T)  # [D_paths, P]
        if k == 1:  # the path of each output row
            path_of_col = [p for p, (_, r0, r1) in enumerate(self.path_rows) for _ in range(r0, r1)]
            self.register_buffer("path_of_col", torch.tensor(path_of_col, dtype=torch.long), persistent=False)
        self.d_out = d_out
        self.symmetric = symmetric
        self.spans1 = list(zip(o1[:-1], o1[1:], strict=True))  # row range of each irrep of one copy
        self.spans2 = list(zip(o2[:-1], o2[1:], strict=True))
        self._plans: dict[tuple, tuple] = {}

    def plan(self, active: Sequence[int] | None, like: torch.Tensor):
        """``([(i1, i2, cg [R, d1 d2], path [R])], index [D_out k], rows)`` for the ``active`` paths
        (None: all), cached (the last 16) per path set, dtype and device: per input pair the
        stacked CG rows of its active paths and the path of each row; ``index[d k + a]`` is the
        row of the concatenated block outputs (``rows`` of them, plus one trailing zero row for
        inactive paths) that is output row ``d`` of channel block ``a``."""
        act = tuple(range(self.n_paths)) if active is None else tuple(sorted(int(p) for p in active))
        key = (act, like.dtype, like.device)
        if key in self._plans:
            return self._plans[key]
        on = set(act)
        index = torch.empty(self.d_out, self.copies, dtype=torch.long)
        steps, row = [], 0
        for (i1, i2), ps in self.blocks.items():
            ps = [p for p in ps if p in on]
            if not ps:
                continue
            path = torch.tensor([p for p in ps for _ in range(self.paths[p][2].dim)], device=like.device)
            steps.append((i1, i2, torch.cat([self.consts.get(f"path_{p}", like) for p in ps]), path))
            for p in ps:
                a, r0, r1 = self.path_rows[p]
                index[r0:r1, a] = torch.arange(row, row + r1 - r0)
                row += r1 - r0
        for p in range(self.n_paths):
            if p not in on:
                a, r0, r1 = self.path_rows[p]
                index[r0:r1, a] = row  # the zero row
        out = (steps, index.flatten().to(like.device), row)
        if len(self._plans) >= 16:  # a random TP-gate phase draws a new path set every step
            self._plans.pop(next(iter(self._plans)))
        self._plans[key] = out
        return out

    def _irrep_major(self, t: torch.Tensor, spans) -> list[torch.Tensor]:
        """``[N, D, k c]`` -> per logical irrep (copy after copy) a contiguous ``[d, N c]`` block."""
        N, D, C = t.shape
        k = self.copies
        t = t.view(N, D, k, C // k).permute(2, 1, 0, 3).reshape(k * D, N * C // k)  # one copy
        return [t[a * D + o: a * D + e] for a in range(k) for o, e in spans]

    def blockwise(self, x: torch.Tensor, y: torch.Tensor, active: Sequence[int] | None = None,
                  path_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The product over the ``active`` paths only (others zero), each scaled by ``path_weight[p]``."""
        steps, index, rows = self.plan(active, x)
        N, C, k = x.shape[0], x.shape[-1], self.copies
        xs, ys = self._irrep_major(x, self.spans1), self._irrep_major(y, self.spans2)
        parts = []
        for i1, i2, cg, path in steps:
            if path_weight is not None:
                cg = cg * path_weight[path].to(x.dtype)[:, None]
            a, b = xs[i1], ys[i2]  # [d1, N c], [d2, N c]
            z = (a.unsqueeze(1) * b.unsqueeze(0)).view(-1, a.shape[1])  # [d1 d2, N c]
            parts.append(cg @ z)  # [R, N c]
        if rows < index.numel() or not parts:
            parts.append(x.new_zeros(1, N * C // k))
        out = torch.cat(parts).view(-1, N, C // k).transpose(0, 1)  # [N, rows (+ 1), c]
        return out.index_select(1, index).view(N, self.d_out, C)  # one gather: 2-3x faster than two passes

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            return self.blockwise(x, y)
        cg_t = self.consts.get("cg_t", x)
        return cg_t @ (x[:, self.I] * y[:, self.J])  # [D_paths, P] @ [N, P, C] -> [N, D_paths, C]
