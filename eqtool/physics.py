"""The ONE autograd function of eqtool: energy -> forces, stress, virial (and hessian).

Conventions (ASE): ``forces = -dE/dpos`` eV/Å; a symmetric strain ``eps`` ``[B, 3, 3]`` maps
``pos -> pos + pos @ eps[batch]`` and ``cell -> cell + cell @ eps`` (row vectors); ``virial =
-dE/deps`` eV and ``stress = (1/V) dE/deps`` eV/Å³ (negative under compression). Systems that are
not periodic in all three directions get zero stress and virial.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from eqtool.data import keys as K

__all__ = ["compute_outputs"]


def compute_outputs(model: nn.Module, batch: Mapping[str, torch.Tensor], forces: bool = True,
                    stress: bool = False, hessian: bool = False, training: bool = False) -> dict:
    """Run an energy model and differentiate it.

    Args:
        model: ``forward(batch) -> {"energy" [B], ...}`` computing edge vectors from positions/cell.
        batch: collated batch (see :mod:`eqtool.data.batch`).
        forces: add ``"forces"`` ``[N, 3]`` eV/Å.
        stress: add ``"stress"`` ``[B, 3, 3]`` eV/Å³ and ``"virial"`` ``[B, 3, 3]`` eV.
        hessian: add ``"hessian"`` ``[3N, 3N]`` eV/Å² = d²E/dpos² over the whole batch (atoms in
            batch order; block-diagonal between systems). Costs 3N backward passes: small systems.
        training: keep the graph (``create_graph``) so losses on forces/stress can be trained;
            otherwise all outputs are detached.

    Returns:
        the model's outputs (``energy`` [B], ``energies`` [N], ...) plus the requested derivatives.
    """
    pos = batch[K.POSITIONS]
    cell = batch[K.CELL]
    with torch.enable_grad():
        inputs = []
        if forces or hessian:
            pos = pos.detach().requires_grad_(True)
            inputs.append(pos)
        eps = None
        if stress:
            eps = torch.zeros_like(cell).requires_grad_(True)  # [B, 3, 3]
            sym = 0.5 * (eps + eps.transpose(1, 2))
            pos = pos + torch.einsum("ni,nij->nj", pos, sym[batch[K.BATCH]])
            cell = cell + torch.bmm(cell, sym)
            inputs.append(eps)
        out = dict(model({**batch, K.POSITIONS: pos, K.CELL: cell}))
        energy = out[K.ENERGY]  # [B]
        if inputs:
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=training or hessian,
                                        allow_unused=True)
            grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=False)]
            if forces or hessian:
                dpos = grads.pop(0)  # [N, 3]
                out[K.FORCES] = -dpos
            if stress:
                de = grads.pop(0)  # [B, 3, 3]
                periodic = batch[K.PBC].all(dim=1)  # [B]
                volume = torch.linalg.det(batch[K.CELL]).abs()
                volume = torch.where(periodic, volume, torch.ones_like(volume))
                mask = periodic.to(de.dtype)[:, None, None]
                out[K.STRESS] = de / volume[:, None, None] * mask
                out[K.VIRIAL] = -de * mask
        if hessian:
            flat = (-out[K.FORCES]).reshape(-1)  # dE/dpos, [3N]
            rows = []
            for i in range(flat.numel()):
                (g,) = torch.autograd.grad(flat[i], inputs[0], retain_graph=True, allow_unused=True,
                                           create_graph=training)
                rows.append(torch.zeros_like(inputs[0]).reshape(-1) if g is None else g.reshape(-1))
            out["hessian"] = torch.stack(rows)  # [3N, 3N]
            if not forces:
                out.pop(K.FORCES)
    if not training:
        out = {k: v.detach() for k, v in out.items()}
    return out
