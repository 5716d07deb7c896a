"""Radial basis functions and the smooth cutoff envelope.

Shapes: ``r`` is ``[E]`` or ``[E, 1]`` distances in Å; bases return ``[E, num_basis]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["BesselBasis", "PolynomialCutoff", "RadialBasis"]


class BesselBasis(nn.Module):
    """Spherical Bessel (sine) basis, DimeNet eq. (7) (Gasteiger et al. 2020, arXiv:2003.03123).

    ``e_n(r) = sqrt(2 / c) * sin(n pi r / c) / r`` for ``n = 1..num_basis``.

    Args:
        cutoff: ``c`` in Å.
        num_basis: number of functions (MACE default 8).
        trainable: make the frequencies ``n pi / c`` trainable parameters.
    """

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = False):
        super().__init__()
        freqs = math.pi / cutoff * torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype())
        if trainable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)
        self.register_buffer("prefactor", torch.tensor(math.sqrt(2.0 / cutoff)))
        self.num_basis = num_basis

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.reshape(-1, 1)  # [E, 1]
        return self.prefactor * torch.sin(self.freqs * r) / r  # [E, num_basis]


class PolynomialCutoff(nn.Module):
    """Polynomial envelope, DimeNet eq. (8) (MACE ``PolynomialCutoff``), with ``d = r / c``:

    ``u(d) = 1 - (p+1)(p+2)/2 d^p + p(p+2) d^(p+1) - p(p+1)/2 d^(p+2)`` for ``d < 1``, else 0.

    ``u(1) = u'(1) = u''(1) = 0``, so
    energies and forces are continuous when a neighbour crosses the cutoff.
    """

    def __init__(self, cutoff: float, p: int = 5):
        super().__init__()
        if p < 2:
            raise ValueError(f"polynomial cutoff needs p >= 2, got {p}")
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        d = r / self.cutoff
        u = (1.0 - (p + 1) * (p + 2) / 2 * d**p + p * (p + 2) * d ** (p + 1)
             - p * (p + 1) / 2 * d ** (p + 2))
        return u * (d < 1.0)


class RadialBasis(nn.Module):
    """Bessel basis times the polynomial envelope: ``[E] -> [E, num_basis]``, zero beyond the cutoff."""

    def __init__(self, cutoff: float, num_basis: int = 8, p: int = 5, trainable: bool = False):
        super().__init__()
        self.bessel = BesselBasis(cutoff, num_basis, trainable)
        self.envelope = PolynomialCutoff(cutoff, p)
        self.num_basis = num_basis

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.reshape(-1, 1)  # [E, 1]
        return self.bessel(r) * self.envelope(r)  # [E, num_basis]
