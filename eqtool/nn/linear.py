"""Equivariant linear maps on channel-uniform features ``[N, D, C]`` (channels last).

A linear map commutes with rotations iff it only mixes channels (and paths) of the same irrep,
never the ``m`` components, so each output irrep ``ir`` gets ``out_ir = sum_k x_ir,k @ W_ir,k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from eqtool.nn.irreps import UniformIrreps

__all__ = ["IrrepsLinear", "ElementIrrepsLinear"]


class IrrepsLinear(nn.Module):
    """Linear map ``[N, D_in, C_in] -> [N, D_out, C_out]``.

    Args:
        irs_in: the irreps along the input's ``D`` axis, in order; an irrep may repeat (e.g. one
            copy per tensor-product path). All copies of one irrep must be contiguous.
        channels_in: ``C_in``.
        irreps_out: output :class:`UniformIrreps` (``C_out`` x irreps); an output irrep absent from
            the input is zero (no path), as in e3nn.
    Weights ``W_ir`` ``[k_ir, C_in, C_out]`` ~ N(0, 1), used as ``W / sqrt(k_ir * C_in)`` (fan-in).
    """

    def __init__(self, irs_in: Sequence, channels_in: int, irreps_out: UniformIrreps):
        super().__init__()
        irs_in = [o3.Irrep(ir) for ir in irs_in]
        self.irreps_out = irreps_out
        self.blocks: list[tuple[int, int, int, int]] = []  # (start row, k copies, dim, weight index)
        self.weights = nn.ParameterList()
        offsets = [0]
        for ir in irs_in:
            offsets.append(offsets[-1] + ir.dim)
        for ir in irreps_out.irs:
            pos = [i for i, x in enumerate(irs_in) if x == ir]
            if not pos:
                self.blocks.append((0, 0, ir.dim, -1))
                continue
            if pos != list(range(pos[0], pos[0] + len(pos))):
                raise ValueError(f"copies of {ir} must be contiguous in {irs_in}")
            self.blocks.append((offsets[pos[0]], len(pos), ir.dim, len(self.weights)))
            self.weights.append(nn.Parameter(torch.randn(len(pos), channels_in, irreps_out.channels)))
        self.channels_in = channels_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        outs = []
        for start, k, d, wi in self.blocks:
            if k == 0:
                outs.append(x.new_zeros(n, d, self.irreps_out.channels))
                continue
            w = self.weights[wi] * (1.0 / math.sqrt(k * self.channels_in))  # [k, C_in, C_out]
            if k == 1:
                outs.append(x[:, start: start + d, :] @ w[0])  # [N, d, C_out]
            else:
                xb = x[:, start: start + k * d, :].reshape(n, k, d, self.channels_in)
                outs.append(torch.einsum("nkdc,kce->nde", xb, w))  # [N, d, C_out]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)  # [N, D_out, C_out]


class ElementIrrepsLinear(nn.Module):
    """Element-dependent linear map (MACE's skip ``TP(h, one_hot(Z))``): ``W_ir[z]`` per irrep.

    ``forward(x [N, D_in, C_in], element_index [N]) -> [N, D_out, C_out]``; implemented as a
    linear map on ``x (x) one_hot`` ``[N, D, n_el * C_in]``.
    """

    def __init__(self, irreps_in: UniformIrreps, irreps_out: UniformIrreps, num_elements: int):
        super().__init__()
        self.num_elements = num_elements
        self.irreps_in = irreps_in
        self.linear = IrrepsLinear(irreps_in.irs, irreps_in.channels * num_elements, irreps_out)

    def forward(self, x: torch.Tensor, element_index: torch.Tensor) -> torch.Tensor:
        if self.num_elements == 1:
            return self.linear(x)
        n, d, c = x.shape
        onehot = torch.nn.functional.one_hot(element_index, self.num_elements).to(x.dtype)  # [N, Z]
        xz = (onehot[:, None, :, None] * x.unsqueeze(2)).reshape(n, d, self.num_elements * c)
        return self.linear(xz)
