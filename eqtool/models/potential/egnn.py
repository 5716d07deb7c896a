"""E(n)-equivariant graph neural network energy model (Satorras, Hoogeboom, Welling, ICML 2021).

Invariant node features only (coordinate updates, eq. 4, are not needed for an energy model;
forces come from autograd through the distances). Per layer (eq. 3, 5, 6):

``m_ij = phi_e(h_i, h_j, rbf(r_ij)) * u(r_ij)``, ``m_i = sum_j m_ij / avg_num_neighbors``,
``h_i <- h_i + phi_h(h_i, m_i)``

with ``rbf`` the Bessel basis times the polynomial envelope ``u`` (instead of the paper's raw
``|r_ij|^2``) so energies and forces are smooth at the cutoff. The first linear layer of ``phi_e``
is applied per node before gathering (``W [h_i, h_j, rbf] = W_a h_i + W_b h_j + W_c rbf``).
Per-atom energy ``scale * MLP(h_i) + shift + E0[Z_i]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from eqtool.errors import EqtoolError
from eqtool.models.potential.base import PotentialBase, edge_vectors
from eqtool.nn import MLP, ElementEmbedding, RadialBasis, normalized_silu, scatter_sum

__all__ = ["EGNN"]


class _Layer(nn.Module):
    def __init__(self, f: int, num_basis: int):
        super().__init__()
        self.edge_in = nn.Linear(2 * f + num_basis, f)
        self.edge_out = nn.Linear(f, f)
        self.node = MLP([2 * f, f, f], bias=True)
        self.f = f

    def forward(self, h, rbf, env, sender, receiver, inv_avg):
        f = self.f
        w = self.edge_in.weight  # [F, 2F + n_basis]
        hi = h @ w[:, :f].T  # [N, F]
        hj = h @ w[:, f: 2 * f].T  # [N, F]
        pre = hi[receiver] + hj[sender] + rbf @ w[:, 2 * f:].T + self.edge_in.bias  # [E, F]
        m = self.edge_out(normalized_silu(pre))  # [E, F]
        m = normalized_silu(m) * env  # [E, F], zero at the cutoff
        agg = scatter_sum(m, receiver, h.shape[0]) * inv_avg  # [N, F]
        return h + self.node(torch.cat([h, agg], dim=-1))


class EGNN(PotentialBase):
    """EGNN energy model: ``forward(batch) -> {"energy" [B] eV, "energies" [N] eV}``.

    Args:
        atomic_numbers: supported elements (default: the keys of ``e0s``).
        cutoff: Å.
        num_features: width ``F`` of the node features.
        num_layers: message-passing layers.
        num_bessel, polynomial_p, trainable_bessel: the radial basis x envelope.
        avg_num_neighbors, e0s, scale, shift: as in :class:`eqtool.models.potential.mace.MACE`.
    """

    def __init__(self, atomic_numbers: Sequence[int] | None = None, cutoff: float = 5.0,
                 num_features: int = 64, num_layers: int = 3, num_bessel: int = 8,
                 polynomial_p: int = 5, trainable_bessel: bool = False, avg_num_neighbors: float = 1.0,
                 e0s: Mapping | None = None, scale: float = 1.0, shift: float = 0.0):
        super().__init__(atomic_numbers, e0s, cutoff, scale, shift, avg_num_neighbors)
        for name, value, lo in (("num_features", num_features, 1), ("num_layers", num_layers, 1),
                                ("num_bessel", num_bessel, 1), ("polynomial_p", polynomial_p, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise EqtoolError(f"'{name}' must be an integer >= {lo}, got {value!r}", source="model")
        self.embedding = ElementEmbedding(self.elements.num_elements, num_features)
        self.radial = RadialBasis(cutoff, num_bessel, polynomial_p, trainable_bessel)
        self.layers = nn.ModuleList([_Layer(num_features, num_bessel) for _ in range(num_layers)])
        self.readout = MLP([num_features, num_features, 1], bias=True)
        self.config = {
            "name": "egnn", "atomic_numbers": self.atomic_numbers.tolist(), "cutoff": float(cutoff),
            "num_features": num_features, "num_layers": num_layers, "num_bessel": num_bessel,
            "polynomial_p": polynomial_p, "trainable_bessel": bool(trainable_bessel),
            "avg_num_neighbors": float(avg_num_neighbors), "e0s": dict(self._e0s), "scale": float(scale),
            "shift": float(shift),
        }

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        elem = self.element_index(batch)  # [N]
        vec, sender, receiver = edge_vectors(batch)
        r = torch.linalg.vector_norm(vec, dim=-1)  # [E]
        rbf = self.radial(r)  # [E, n_basis], zero at the cutoff
        env = self.radial.envelope(r).unsqueeze(-1)  # [E, 1]
        h = self.embedding(elem)  # [N, F]
        inv_avg = 1.0 / self.avg_num_neighbors
        for layer in self.layers:
            h = layer(h, rbf, env, sender, receiver, inv_avg)
        return self.finish(self.readout(h).squeeze(-1), elem, batch)
