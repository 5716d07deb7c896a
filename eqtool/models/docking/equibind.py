"""EquiBind-class docking model (Stärk, Ganea, Pattanaik, Barzilay, Jaakkola; ICML 2022).

Independent E(3)-equivariant graph matching layers (IEGMN, EquiBind sec. 3.2): each layer runs
EGNN messages within the ligand graph (all heavy-atom pairs; bond type, current and input-conformer
distances) and within the receptor residue graph (pocket C-alpha, pairs within ``receptor_cutoff``),
plus invariant cross-attention between the two graphs (features only, no inter-graph distances). Only
the ligand coordinates move (eq. 4-style EGNN update from intra-ligand messages); the receptor
C-alpha stay fixed.

``num_keypoints`` ligand and receptor keypoints are attention-pooled coordinates (EquiBind eq. 7:
queries from the mean features of the *other* graph); Kabsch (:func:`.geometry.kabsch`) aligns the
ligand keypoints onto the receptor keypoints, and that rigid transform moves the deformed ligand
into the pocket. Because cross-graph terms use features only, the prediction does not depend on
the input ligand's position or orientation, and it rotates and translates with the receptor.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eqtool.errors import EqtoolError
from eqtool.models.docking.featurize import BOND_FEATURES, ELEMENTS, LIGAND_FEATURES, RECEPTOR_FEATURES
from eqtool.models.docking.geometry import kabsch, rbf, segment_softmax
from eqtool.nn import scatter_sum

__all__ = ["EquiBind", "PRED_POSITIONS", "LIGAND_KEYPOINTS", "RECEPTOR_KEYPOINTS", "KEYPOINT_WEIGHTS"]

PRED_POSITIONS = "ligand_positions_pred"  # [Nl, 3] Å, predicted ligand heavy atoms in the receptor frame
DEFORMED = "ligand_positions_deformed"  # [Nl, 3] Å, ligand after the layers, in the input frame
LIGAND_KEYPOINTS = "ligand_keypoints"  # [B, K, 3] Å, ligand keypoints after the Kabsch transform
RECEPTOR_KEYPOINTS = "receptor_keypoints"  # [B, K, 3] Å
KEYPOINT_WEIGHTS = "ligand_keypoint_weights"  # [Nl, K] attention weights (sum to 1 per complex and k)
ROTATION, TRANSLATION = "rotation", "translation"  # [B, 3, 3], [B, 3]


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.SiLU(), nn.Linear(h, o))


def _cross_pairs(batch_a: torch.Tensor, n_a: torch.Tensor, batch_b: torch.Tensor, n_b: torch.Tensor):
    """All pairs ``(a, b)`` of nodes of graph A and graph B in the same complex: ``[P]``, ``[P]``."""
    start_b = torch.cumsum(n_b, 0) - n_b  # [B]
    counts = n_b[batch_a]  # [Na]
    a = torch.repeat_interleave(torch.arange(batch_a.shape[0], device=batch_a.device), counts)  # [P]
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    b = start_b[batch_a][a] + torch.arange(a.shape[0], device=a.device) - first  # [P]
    return a, b


class _CrossAttention(nn.Module):
    """``mu_i = sum_j a_ij W_v h_j`` over the other graph's nodes ``j`` of the same complex (eq. 3)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(hidden, hidden, bias=False) for _ in range(3))
        self.scale = 1.0 / math.sqrt(hidden)

    def forward(self, h_a, h_b, a, b):
        logits = (self.q(h_a)[a] * self.k(h_b)[b]).sum(-1, keepdim=True) * self.scale  # [P, 1]
        w = segment_softmax(logits, a, h_a.shape[0])  # [P, 1]
        return scatter_sum(w * self.v(h_b)[b], a, h_a.shape[0])  # [Na, H]


class _IEGMNLayer(nn.Module):
    def __init__(self, hidden: int, n_rbf: int, rbf_cutoff: float, receptor_cutoff: float):
        super().__init__()
        self.n_rbf, self.rbf_cutoff, self.receptor_cutoff = n_rbf, rbf_cutoff, receptor_cutoff
        self.lig_msg = _mlp(2 * hidden + 2 * n_rbf + BOND_FEATURES, hidden, hidden)
        self.rec_msg = _mlp(2 * hidden + n_rbf, hidden, hidden)
        self.coord = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1, bias=False))
        nn.init.xavier_uniform_(self.coord[-1].weight, gain=0.001)  # start near the identity map
        self.cross_lig, self.cross_rec = _CrossAttention(hidden), _CrossAttention(hidden)
        self.lig_upd = _mlp(4 * hidden, hidden, hidden)
        self.rec_upd = _mlp(4 * hidden, hidden, hidden)
        self.norm_l, self.norm_r = nn.LayerNorm(hidden), nn.LayerNorm(hidden)

    def forward(self, g: dict, h_l, x_l, h_r, h0_l, h0_r):
        s, r = g["ligand_edge_index"]
        diff = x_l[r] - x_l[s]  # [El, 3] x_i - x_j
        d = diff.norm(dim=-1)  # [El]
        m = self.lig_msg(torch.cat([h_l[r], h_l[s], rbf(d, self.n_rbf, self.rbf_cutoff), g["d0_rbf"],
                                    g["ligand_edge_features"]], -1))  # [El, H]
        n_l = g["ligand_n_atoms"][g["ligand_batch"]].to(x_l.dtype)  # [Nl]
        inv_deg = 1.0 / (n_l - 1).clamp(min=1).unsqueeze(-1)  # mean over the other atoms
        step = diff / (d.unsqueeze(-1) + 1.0) * self.coord(m)  # [El, 3]
        x_new = x_l + scatter_sum(step, r, x_l.shape[0]) * inv_deg  # EGNN eq. 4
        agg_l = scatter_sum(m, r, h_l.shape[0]) * inv_deg  # [Nl, H]
        sr, rr = g["receptor_edge_index"]
        mr = self.rec_msg(torch.cat([h_r[rr], h_r[sr], g["receptor_rbf"]], -1))  # [Er, H]
        deg_r = scatter_sum(torch.ones_like(rr, dtype=h_r.dtype), rr, h_r.shape[0]).clamp(min=1).unsqueeze(-1)
        agg_r = scatter_sum(mr, rr, h_r.shape[0]) / deg_r  # [Nr, H]
        la, rb = g["cross"]  # ligand atom, receptor residue of each same-complex pair
        mu_l = self.cross_lig(h_l, h_r, la, rb)  # [Nl, H]
        mu_r = self.cross_rec(h_r, h_l, rb, la)  # [Nr, H]
        h_l = self.norm_l(h_l + self.lig_upd(torch.cat([h_l, agg_l, mu_l, h0_l], -1)))
        h_r = self.norm_r(h_r + self.rec_upd(torch.cat([h_r, agg_r, mu_r, h0_r], -1)))
        return h_l, x_new, h_r


class _Keypoints(nn.Module):
    """``K`` attention-pooled points of a graph, queried by the other graph's mean features (eq. 7)."""

    def __init__(self, hidden: int, k: int):
        super().__init__()
        self.k = k
        self.query = nn.Linear(hidden, hidden * k, bias=False)
        self.key = nn.Linear(hidden, hidden * k, bias=False)
        self.scale = 1.0 / math.sqrt(hidden)

    def forward(self, h, x, index, n_graphs, h_other_mean):
        n, hid = h.shape
        q = self.query(h_other_mean).view(n_graphs, self.k, hid)  # [B, K, H]
        key = self.key(h).view(n, self.k, hid)  # [N, K, H]
        logits = (key * q[index]).sum(-1) * self.scale  # [N, K]
        w = segment_softmax(logits, index, n_graphs)  # [N, K]
        pts = scatter_sum(w.unsqueeze(-1) * x.unsqueeze(1), index, n_graphs)  # [B, K, 3]
        return pts, w


class EquiBind(nn.Module):
    """``forward(batch) -> {"ligand_positions_pred" [Nl, 3], keypoints, rotation, ...}``.

    Input keys: see :mod:`eqtool.models.docking.featurize` (``ligand_*``, ``receptor_*``; positions
    in Å). Outputs: ``ligand_positions_pred`` [Nl, 3] Å (receptor frame), ``ligand_positions_deformed``
    [Nl, 3] (input frame, before the rigid transform), ``ligand_keypoints`` / ``receptor_keypoints``
    [B, K, 3], ``ligand_keypoint_weights`` [Nl, K], ``rotation`` [B, 3, 3], ``translation`` [B, 3].

    Args:
        num_features: hidden width.
        num_layers: IEGMN layers.
        num_keypoints: ``K`` (EquiBind: a few; >= 3 for a defined Kabsch rotation).
        num_rbf: Gaussians of the distance features.
        rbf_cutoff: largest distance resolved by the Gaussians, Å.
        receptor_cutoff: C-alpha pairs closer than this are receptor edges, Å.
        pocket_radius: residues whose C-alpha lie within this of the pocket centre form the
            receptor graph (used by :func:`eqtool.models.docking.inference.model_poses`), Å.
    """

    kind = "docking"

    def __init__(self, num_features: int = 64, num_layers: int = 4, num_keypoints: int = 8, num_rbf: int = 16,
                 rbf_cutoff: float = 15.0, receptor_cutoff: float = 10.0, pocket_radius: float = 14.0):
        super().__init__()
        for name, value, lo in (("num_features", num_features, 1), ("num_layers", num_layers, 1),
                                ("num_keypoints", num_keypoints, 3), ("num_rbf", num_rbf, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise EqtoolError(f"'{name}' must be an integer >= {lo}, got {value!r}", source="model")
        for name, value in (("rbf_cutoff", rbf_cutoff), ("receptor_cutoff", receptor_cutoff),
                            ("pocket_radius", pocket_radius)):
            if not value > 0:
                raise EqtoolError(f"'{name}' must be > 0, got {value!r}", source="model")
        self.num_rbf, self.rbf_cutoff = num_rbf, float(rbf_cutoff)
        self.receptor_cutoff, self.pocket_radius = float(receptor_cutoff), float(pocket_radius)
        self.cutoff = self.pocket_radius
        self.register_buffer("atomic_numbers", torch.tensor(ELEMENTS, dtype=torch.long), persistent=False)
        self.embed_l = nn.Linear(LIGAND_FEATURES, num_features)
        self.embed_r = nn.Linear(RECEPTOR_FEATURES, num_features)
        self.layers = nn.ModuleList([_IEGMNLayer(num_features, num_rbf, self.rbf_cutoff, self.receptor_cutoff)
                                     for _ in range(num_layers)])
        self.kp_l = _Keypoints(num_features, num_keypoints)
        self.kp_r = _Keypoints(num_features, num_keypoints)
        self.config = {"name": "equibind", "num_features": num_features, "num_layers": num_layers,
                       "num_keypoints": num_keypoints, "num_rbf": num_rbf, "rbf_cutoff": self.rbf_cutoff,
                       "receptor_cutoff": self.receptor_cutoff, "pocket_radius": self.pocket_radius}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x_l, x_r = batch["ligand_positions"], batch["receptor_positions"]
        lb, rbatch = batch["ligand_batch"], batch["receptor_batch"]
        n_l, n_r = batch["ligand_n_atoms"], batch["receptor_n_residues"]
        n_graphs = n_l.shape[0]
        s, r = batch["ligand_edge_index"]
        sr, rr = batch["receptor_edge_index"]
        g = dict(batch)
        g["d0_rbf"] = rbf((x_l[r] - x_l[s]).norm(dim=-1), self.num_rbf, self.rbf_cutoff)  # [El, n_rbf]
        g["receptor_rbf"] = rbf((x_r[rr] - x_r[sr]).norm(dim=-1), self.num_rbf, self.rbf_cutoff)
        g["cross"] = _cross_pairs(lb, n_l, rbatch, n_r)
        h_l = h0_l = self.embed_l(batch["ligand_features"])  # [Nl, H]
        h_r = h0_r = self.embed_r(batch["receptor_features"])  # [Nr, H]
        x = x_l
        for layer in self.layers:
            h_l, x, h_r = layer(g, h_l, x, h_r, h0_l, h0_r)
        mean_l = scatter_sum(h_l, lb, n_graphs) / n_l.unsqueeze(-1).to(h_l.dtype)  # [B, H]
        mean_r = scatter_sum(h_r, rbatch, n_graphs) / n_r.unsqueeze(-1).to(h_r.dtype)
        kp_l, w_l = self.kp_l(h_l, x, lb, n_graphs, mean_r)  # [B, K, 3], [Nl, K]
        kp_r, _ = self.kp_r(h_r, x_r, rbatch, n_graphs, mean_l)
        rot, trans = kabsch(kp_l, kp_r)
        pred = (rot[lb] @ x.unsqueeze(-1)).squeeze(-1) + trans[lb]  # [Nl, 3]
        kp_l_moved = kp_l @ rot.transpose(1, 2) + trans.unsqueeze(1)  # [B, K, 3]
        return {PRED_POSITIONS: pred, DEFORMED: x, LIGAND_KEYPOINTS: kp_l_moved, RECEPTOR_KEYPOINTS: kp_r,
                KEYPOINT_WEIGHTS: w_l, ROTATION: rot, TRANSLATION: trans}
