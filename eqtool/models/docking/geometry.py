"""Differentiable geometry of the docking model: segment softmax and batched Kabsch (torch)."""

from __future__ import annotations

import torch

__all__ = ["segment_softmax", "kabsch", "rbf"]


def segment_softmax(logits: torch.Tensor, index: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``logits`` ``[N, H]`` over the rows that share ``index`` ``[N]`` (per column)."""
    h = logits.shape[1]
    seg_max = logits.new_full((n_segments, h), float("-inf"))
    seg_max = seg_max.scatter_reduce(0, index.unsqueeze(-1).expand(-1, h), logits, "amax", include_self=True)
    e = torch.exp(logits - seg_max[index].detach())  # [N, H]
    denom = e.new_zeros((n_segments, h)).index_add_(0, index, e)  # [S, H]
    return e / denom[index]


def kabsch(source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation ``R`` [B, 3, 3] and translation ``t`` [B, 3] minimising ``|R p + t - q|^2`` over point sets.

    Args:
        source, target: ``[B, K, 3]`` corresponding points (Å).

    The SVD runs in float64 (its gradient is ill-conditioned near degenerate singular values); the
    sign correction keeps ``det R = +1`` (Kabsch 1976; Umeyama 1991 eq. 39-40).
    """
    dtype = source.dtype
    p, q = source.double(), target.double()
    pc, qc = p.mean(1, keepdim=True), q.mean(1, keepdim=True)  # [B, 1, 3]
    cov = (p - pc).transpose(1, 2) @ (q - qc)  # [B, 3, 3]
    u, _, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(vh.transpose(1, 2) @ u.transpose(1, 2)))  # [B]
    diag = torch.ones_like(cov[:, 0])  # [B, 3]
    diag = torch.cat([diag[:, :2], d.unsqueeze(-1)], dim=1)
    rot = vh.transpose(1, 2) @ torch.diag_embed(diag) @ u.transpose(1, 2)  # [B, 3, 3]
    trans = qc.squeeze(1) - (rot @ pc.transpose(1, 2)).squeeze(-1)  # [B, 3]
    return rot.to(dtype), trans.to(dtype)


def rbf(d: torch.Tensor, n: int, cutoff: float) -> torch.Tensor:
    """Gaussian radial basis of distances ``d`` ``[E]`` (Å): ``[E, n]`` centres evenly on [0, cutoff]."""
    centres = torch.linspace(0.0, cutoff, n, device=d.device, dtype=d.dtype)
    width = cutoff / n
    return torch.exp(-((d.unsqueeze(-1) - centres) / width) ** 2)
