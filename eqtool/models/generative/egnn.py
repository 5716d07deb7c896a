"""EGNN denoiser of EDM: E(n)-equivariant network predicting the noise on positions and atom features.

Satorras, Hoogeboom, Welling (ICML 2021) with EDM's changes (Hoogeboom et al., ICML 2022, app. B):
every equivariant block runs ``sublayers`` invariant message-passing layers (eq. 3, 5, 6; sigmoid
attention on the messages) and then one coordinate update (eq. 4) with a normalised and
tanh-bounded step:

``x_i <- x_i + sum_j (x_i - x_j) / (|x_i - x_j| + c) * tanh(phi_x(h_i, h_j, d_ij^2, d0_ij^2)) * r``

with ``c = norm_constant`` (1 Å), ``r = coords_range / num_layers`` and ``d0`` the distances of the
input positions. The predicted position noise is ``x_out - x_in`` projected to zero centre of mass,
so it rotates with the input and ignores translations; the predicted feature noise is invariant.
Time ``t / T`` enters as one more input feature of every atom.

Graphs are fully connected within each molecule (no cutoff: QM9-size molecules), built from
``batch``; self-pairs are excluded.
"""

from __future__ import annotations

import torch
from torch import nn

from eqtool.data import keys as K
from eqtool.nn import scatter_sum

__all__ = ["EGNNDenoiser", "fully_connected_edges", "remove_mean", "NODE_FEATURES", "EPS_POSITIONS",
           "EPS_FEATURES"]

NODE_FEATURES = "node_features"  # [N, F] noisy atom features z_h (scaled one-hot types, charges)
EPS_POSITIONS = "eps_positions"  # [N, 3] predicted noise on positions (zero mean per molecule)
EPS_FEATURES = "eps_features"  # [N, F] predicted noise on features


def fully_connected_edges(batch: torch.Tensor, n_atoms: torch.Tensor) -> torch.Tensor:
    """All ordered pairs ``(j, i)``, ``j != i``, within each molecule.

    Args:
        batch: ``[N]`` molecule index of each atom (atoms of a molecule contiguous, molecules in order).
        n_atoms: ``[B]`` atoms per molecule.

    Returns:
        ``[2, E]`` long, row 0 sender ``j``, row 1 receiver ``i``; ``E = sum n_b (n_b - 1)``.
    """
    start = torch.cumsum(n_atoms, 0) - n_atoms  # [B] first atom of each molecule
    counts = n_atoms[batch]  # [N] size of each atom's molecule
    receiver = torch.repeat_interleave(torch.arange(batch.shape[0], device=batch.device), counts)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)  # [P] row start
    local = torch.arange(receiver.shape[0], device=batch.device) - first  # [P] 0..n-1
    sender = start[batch][receiver] + local  # [P]
    keep = sender != receiver
    return torch.stack([sender[keep], receiver[keep]])


def remove_mean(x: torch.Tensor, batch: torch.Tensor, n_atoms: torch.Tensor) -> torch.Tensor:
    """``x`` ``[N, 3]`` minus its per-molecule mean (projection to the zero centre-of-mass subspace)."""
    mean = scatter_sum(x, batch, n_atoms.shape[0]) / n_atoms.to(x.dtype).unsqueeze(-1)  # [B, 3]
    return x - mean[batch]


class _InvariantLayer(nn.Module):
    """One message-passing layer on invariant features (EGNN eq. 3, 5, 6, with attention)."""

    def __init__(self, hidden: int, edge_dim: int, attention: bool, aggregation_factor: float):
        super().__init__()
        self.edge_mlp = nn.Sequential(nn.Linear(2 * hidden + edge_dim, hidden), nn.SiLU(),
                                      nn.Linear(hidden, hidden), nn.SiLU())
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.att_mlp = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid()) if attention else None
        self.inv_agg = 1.0 / float(aggregation_factor)

    def forward(self, h, edge_attr, sender, receiver):
        m = self.edge_mlp(torch.cat([h[receiver], h[sender], edge_attr], dim=-1))  # [E, H]
        if self.att_mlp is not None:
            m = m * self.att_mlp(m)
        agg = scatter_sum(m, receiver, h.shape[0]) * self.inv_agg  # [N, H]
        return h + self.node_mlp(torch.cat([h, agg], dim=-1))


class _CoordinateUpdate(nn.Module):
    """EGNN eq. 4 with EDM's normalised difference and tanh-bounded step (at most ``coords_range``)."""

    def __init__(self, hidden: int, edge_dim: int, tanh: bool, coords_range: float,
                 aggregation_factor: float):
        super().__init__()
        last = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)  # start close to the identity map
        self.coord_mlp = nn.Sequential(nn.Linear(2 * hidden + edge_dim, hidden), nn.SiLU(),
                                       nn.Linear(hidden, hidden), nn.SiLU(), last)
        self.tanh, self.coords_range = bool(tanh), float(coords_range)
        self.inv_agg = 1.0 / float(aggregation_factor)

    def forward(self, h, x, unit_diff, edge_attr, sender, receiver):
        w = self.coord_mlp(torch.cat([h[receiver], h[sender], edge_attr], dim=-1))  # [E, 1]
        if self.tanh:
            w = torch.tanh(w) * self.coords_range
        step = unit_diff * w  # [E, 3]
        return x + scatter_sum(step, receiver, x.shape[0]) * self.inv_agg


class _Block(nn.Module):
    def __init__(self, hidden, sublayers, attention, tanh, coords_range, norm_constant, aggregation_factor):
        super().__init__()
        self.layers = nn.ModuleList([_InvariantLayer(hidden, 2, attention, aggregation_factor)
                                     for _ in range(sublayers)])
        self.update = _CoordinateUpdate(hidden, 2, tanh, coords_range, aggregation_factor)
        self.norm_constant = float(norm_constant)

    def forward(self, h, x, d0, sender, receiver):
        diff = x[receiver] - x[sender]  # [E, 3] x_i - x_j
        d2 = (diff * diff).sum(-1, keepdim=True)  # [E, 1] Å^2
        unit = diff / (torch.sqrt(d2 + 1e-8) + self.norm_constant)  # [E, 3]
        edge_attr = torch.cat([d2, d0], dim=-1)  # [E, 2]
        for layer in self.layers:
            h = layer(h, edge_attr, sender, receiver)
        return h, self.update(h, x, unit, edge_attr, sender, receiver)


class EGNNDenoiser(nn.Module):
    """``forward(batch) -> {"eps_positions" [N, 3], "eps_features" [N, F]}``.

    Input keys: ``positions`` ``[N, 3]`` (noisy, zero centre of mass per molecule), ``node_features``
    ``[N, F]`` (noisy features), ``batch`` ``[N]``, ``n_atoms`` ``[B]``, ``diffusion_time`` ``[B]``
    (``t / T`` in [0, 1]).

    Args:
        in_features: ``F``.
        hidden: width of the invariant features.
        num_layers: equivariant blocks (each with one coordinate update).
        sublayers: invariant layers per block.
        attention: sigmoid attention on the messages.
        tanh: bound each coordinate step with ``tanh``.
        coords_range: total bound of the steps over all blocks, Å.
        norm_constant: ``c`` in ``(x_i - x_j) / (|x_i - x_j| + c)``, Å.
        aggregation_factor: sums over neighbours are divided by this.
    """

    def __init__(self, in_features: int, hidden: int = 256, num_layers: int = 9, sublayers: int = 1,
                 attention: bool = True, tanh: bool = True, coords_range: float = 15.0,
                 norm_constant: float = 1.0, aggregation_factor: float = 1.0):
        super().__init__()
        self.in_features = int(in_features)
        self.embedding = nn.Linear(in_features + 1, hidden)  # + time
        self.blocks = nn.ModuleList([
            _Block(hidden, sublayers, attention, tanh, coords_range / num_layers, norm_constant,
                   aggregation_factor) for _ in range(num_layers)])
        self.embedding_out = nn.Linear(hidden, in_features)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, z_h = batch[K.POSITIONS], batch[NODE_FEATURES]
        index, n_atoms = batch[K.BATCH], batch[K.N_ATOMS]
        sender, receiver = fully_connected_edges(index, n_atoms)
        t = batch[K.DIFFUSION_TIME].to(z_h.dtype)[index].unsqueeze(-1)  # [N, 1]
        h = self.embedding(torch.cat([z_h, t], dim=-1))  # [N, H]
        diff0 = x[receiver] - x[sender]
        d0 = (diff0 * diff0).sum(-1, keepdim=True)  # [E, 1] Å^2 of the input positions
        y = x
        for block in self.blocks:
            h, y = block(h, y, d0, sender, receiver)
        return {EPS_POSITIONS: remove_mean(y - x, index, n_atoms), EPS_FEATURES: self.embedding_out(h)}
