"""Multi-layer perceptron with e3nn-style initialisation (weights N(0,1), scaled by 1/sqrt(fan_in))."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "normalized_silu"]

_SILU_2MOM = 1.6790  # 1 / sqrt(E[silu(x)^2]) for x ~ N(0, 1) (e3nn normalize2mom)


def normalized_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU rescaled to unit second moment on N(0, 1) inputs."""
    return torch.nn.functional.silu(x) * _SILU_2MOM


class MLP(nn.Module):
    """``[.., sizes[0]] -> [.., sizes[-1]]`` with SiLU between layers.

    Args:
        sizes: layer widths, input first.
        bias: add biases. Keep ``False`` for radial MLPs: then ``MLP(0) = 0`` and edge weights
            vanish smoothly with the envelope at the cutoff.
    """

    def __init__(self, sizes: Sequence[int], bias: bool = False):
        super().__init__()
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(a, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=False)])
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.zeros(b)) for b in sizes[1:]]) if bias else None
        self.sizes = list(sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.weights)
        for i, w in enumerate(self.weights):
            x = x @ (w * (1.0 / math.sqrt(w.shape[0])))
            if self.biases is not None:
                x = x + self.biases[i]
            if i < n - 1:
                x = normalized_silu(x)
        return x
