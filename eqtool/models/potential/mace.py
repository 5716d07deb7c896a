"""MACE-class equivariant potential (Batatia et al., NeurIPS 2022, arXiv:2206.07697).

Per interaction ``t`` (MACE ``RealAgnosticResidualInteractionBlock`` + ``EquivariantProductBasisBlock``):

1. ``h~ = Linear(h)``; ``A_i = Linear( sum_j R(r_ij) * h~_j (x) Y(r_ij) ) / avg_num_neighbors``
   (eq. 8-9: "uvu" tensor product, weights from a radial MLP on Bessel x envelope features)
2. ``m_i = ProductBasis(A_i, Z_i)`` -- body order ``correlation + 1`` (eq. 10-11); implemented as a
   recursive channel-wise tensor power with element-dependent weights (see
   :mod:`eqtool.nn.product` for which and why)
3. ``h_i = Linear(m_i) + Skip(h_i, Z_i)`` (eq. 12, residual element-dependent skip)
4. readout: linear on the ``0e`` channels, an MLP for the last interaction (eq. 13)

Per-atom energy ``E_i = scale * sum_t readout_t(h_i) + shift + E0[Z_i]``. The last interaction
only carries scalars (as MACE does), and all features are channel-uniform ``[N, D, C]`` (channels last).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from e3nn import o3
from torch import nn

from eqtool.errors import EqtoolError
from eqtool.models.potential.base import PotentialBase, edge_vectors
from eqtool.nn import (
    MLP,
    EdgeConvTP,
    ElementEmbedding,
    ElementIrrepsLinear,
    IrrepsLinear,
    ProductBasis,
    RadialBasis,
    UniformIrreps,
)

__all__ = ["MACE"]


class _Interaction(nn.Module):
    """One MACE layer: convolution -> product basis -> linear + skip. ``[N, D_in, C] -> [N, D_out, C]``."""

    def __init__(self, irreps_in: UniformIrreps, irreps_out: UniformIrreps, lmax: int, num_basis: int,
                 radial_mlp: Sequence[int], correlation: int, num_elements: int, avg_num_neighbors: float):
        super().__init__()
        c = irreps_in.channels
        irreps_a = UniformIrreps([o3.Irrep(l, (-1) ** l) for l in range(lmax + 1)], c)
        self.skip = ElementIrrepsLinear(irreps_in, irreps_out, num_elements)
        self.linear_up = IrrepsLinear(irreps_in.irs, c, irreps_in)
        self.conv = EdgeConvTP(irreps_in.irs, lmax, irreps_a.irs)
        self.radial_mlp = MLP([num_basis, *radial_mlp, self.conv.n_paths * c])
        self.linear_a = IrrepsLinear(self.conv.irs_out, c, irreps_a)
        self.product = ProductBasis(irreps_a.irs, irreps_out.irs, correlation, c, num_elements)
        self.linear_out = IrrepsLinear(irreps_out.irs, c, irreps_out)
        self.inv_avg = 1.0 / avg_num_neighbors
        self.channels = c

    def forward(self, h, Y, radial, sender, receiver, element_index):
        n, e = h.shape[0], Y.shape[0]
        sc = self.skip(h, element_index)  # [N, D_out, C]
        h = self.linear_up(h)  # [N, D_in, C]
        w = self.radial_mlp(radial).view(e, self.conv.n_paths, self.channels)  # [E, n_paths, C]
        a = self.conv(h[sender], Y, w, receiver, n)  # [N, D_paths, C]
        a = self.linear_a(a) * self.inv_avg  # [N, D_A, C]
        m = self.product(a, element_index)  # [N, D_out, C]
        return self.linear_out(m) + sc


class MACE(PotentialBase):
    """MACE-class potential: ``forward(batch) -> {"energy" [B] eV, "energies" [N] eV}``.

    Args:
        atomic_numbers: supported elements (default: the keys of ``e0s``).
        cutoff: radial cutoff in Å.
        hidden_irreps: node features, one multiplicity, natural parity, e.g. ``"32x0e+32x1o"``.
        max_ell: maximum ``l`` of the edge spherical harmonics (and of ``A``).
        num_interactions: message-passing layers (>= 1).
        correlation: body order minus one of the product basis (>= 1).
        num_bessel: radial basis size; ``trainable_bessel`` makes its frequencies trainable.
        polynomial_p: envelope exponent ``p`` (DimeNet eq. 8).
        radial_mlp: hidden widths of the radial MLP.
        readout_mlp: hidden width of the last readout MLP.
        avg_num_neighbors: messages are divided by it.
        e0s: ``{Z: E0}`` reference energies (eV); default 0.
        scale, shift: per-atom energy ``scale * x + shift`` (eV).
    """

    def __init__(self, atomic_numbers: Sequence[int] | None = None, cutoff: float = 5.0,
                 hidden_irreps: str = "32x0e+32x1o", max_ell: int = 3, num_interactions: int = 2,
                 correlation: int = 3, num_bessel: int = 8, trainable_bessel: bool = False,
                 polynomial_p: int = 5, radial_mlp: Sequence[int] = (64, 64, 64), readout_mlp: int = 16,
                 avg_num_neighbors: float = 1.0, e0s: Mapping | None = None, scale: float = 1.0,
                 shift: float = 0.0):
        super().__init__(atomic_numbers, e0s, cutoff, scale, shift, avg_num_neighbors)
        hidden = UniformIrreps(hidden_irreps)
        for name, value, lo in (("max_ell", max_ell, 0), ("num_interactions", num_interactions, 1),
                                ("correlation", correlation, 1), ("num_bessel", num_bessel, 1),
                                ("polynomial_p", polynomial_p, 2), ("readout_mlp", readout_mlp, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise EqtoolError(f"'{name}' must be an integer >= {lo}, got {value!r}", source="model")
        if not all(isinstance(w, int) and w > 0 for w in radial_mlp):
            raise EqtoolError(f"'radial_mlp' must be a list of positive integers, got {radial_mlp!r}",
                              source="model")
        if hidden.irs[0] != o3.Irrep("0e"):
            raise EqtoolError(f"'hidden_irreps' must start with scalars 0e, got {hidden_irreps!r}",
                              source="model")
        bad = [str(ir) for ir in hidden.irs if ir.p != (-1) ** ir.l or ir.l > max_ell]
        if bad:
            raise EqtoolError(f"'hidden_irreps' {bad} must have natural parity and l <= max_ell={max_ell}",
                              source="model")
        c, n_el = hidden.channels, self.elements.num_elements
        self.embedding = ElementEmbedding(n_el, c)
        self.radial = RadialBasis(cutoff, num_bessel, polynomial_p, trainable_bessel)
        self.sh = o3.SphericalHarmonics(list(range(max_ell + 1)), normalize=True,
                                        normalization="component")
        scalars = UniformIrreps(["0e"], c)
        layers, readouts = [], []
        irreps_in = scalars
        for t in range(num_interactions):
            last = t == num_interactions - 1
            irreps_out = scalars if last else hidden
            layers.append(_Interaction(irreps_in, irreps_out, max_ell, num_bessel, radial_mlp, correlation,
                                       n_el, avg_num_neighbors))
            readouts.append(MLP([c, readout_mlp, 1]) if last else MLP([c, 1]))
            irreps_in = irreps_out
        self.interactions = nn.ModuleList(layers)
        self.readouts = nn.ModuleList(readouts)
        self.config = {
            "name": "mace", "atomic_numbers": self.atomic_numbers.tolist(), "cutoff": float(cutoff),
            "hidden_irreps": str(hidden), "max_ell": max_ell, "num_interactions": num_interactions,
            "correlation": correlation, "num_bessel": num_bessel, "trainable_bessel": bool(trainable_bessel),
            "polynomial_p": polynomial_p, "radial_mlp": list(radial_mlp), "readout_mlp": readout_mlp,
            "avg_num_neighbors": float(avg_num_neighbors), "e0s": dict(self._e0s), "scale": float(scale),
            "shift": float(shift),
        }

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        elem = self.element_index(batch)  # [N]
        vec, sender, receiver = edge_vectors(batch)  # [E, 3]
        r = torch.linalg.vector_norm(vec, dim=-1)  # [E]
        Y = self.sh(vec)  # [E, (max_ell+1)^2]
        radial = self.radial(r)  # [E, num_bessel]
        h = self.embedding(elem).unsqueeze(1)  # [N, 1, C]
        readout = torch.zeros_like(h[:, 0, 0])  # [N]
        for layer, head in zip(self.interactions, self.readouts, strict=False):
            h = layer(h, Y, radial, sender, receiver, elem)  # [N, D, C]
            readout = readout + head(h[:, 0, :]).squeeze(-1)  # [N] from the 0e channels
        return self.finish(readout, elem, batch)
