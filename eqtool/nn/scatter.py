"""Scatter helpers (index_add_ based, no torch_scatter dependency)."""

from __future__ import annotations

import torch

__all__ = ["scatter_sum"]


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` ``[E, ...]`` into ``[dim_size, ...]`` by ``index`` ``[E]`` (along dim 0)."""
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add_(0, index, src)
