"""Equivariant gate nonlinearity on channel-uniform features ``[N, D, C]``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from eqtool.nn.mlp import normalized_silu

__all__ = ["Gate"]


class Gate(nn.Module):
    """Gate (Weiler et al. 2018; e3nn ``nn.Gate``): scalars ``0e`` -> SiLU; every other irrep is
    multiplied by ``sigmoid`` of its own block of gate scalars.

    Input ``[N, D + n_gated, C]``: irreps ``irs`` followed by ``n_gated`` extra ``0e`` gate rows
    (one per non-scalar irrep, in order); output ``[N, D, C]`` with irreps ``irs``.
    """

    def __init__(self, irs: Sequence):
        super().__init__()
        irs = [o3.Irrep(ir) for ir in irs]
        self.irs = irs
        gate_idx, scalar_cols = [], []
        col, n_gated = 0, 0
        d = sum(ir.dim for ir in irs)
        for ir in irs:
            if ir == o3.Irrep("0e"):
                scalar_cols.append(col)
                gate_idx.append(-1)
            else:
                gate_idx += [d + n_gated] * ir.dim
                n_gated += 1
            if ir == o3.Irrep("0e"):
                col += 1
                continue
            col += ir.dim
        self.n_gated = n_gated
        self.dim = d
        is_scalar = torch.zeros(d, dtype=torch.bool)
        is_scalar[scalar_cols] = True
        gidx = torch.tensor([g if g >= 0 else 0 for g in gate_idx], dtype=torch.long)
        self.register_buffer("is_scalar", is_scalar, persistent=False)
        self.register_buffer("gate_index", gidx, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = x[:, : self.dim]  # [N, D, C]
        gates = torch.sigmoid(x[:, self.gate_index])  # [N, D, C]
        return torch.where(self.is_scalar[:, None], normalized_silu(feats), feats * gates)
