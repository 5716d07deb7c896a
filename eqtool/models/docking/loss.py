"""EquiBind's training loss: ligand coordinate MSE + keypoint optimal-transport term (Å²)."""

from __future__ import annotations

import numpy as np
import torch

from eqtool.models.docking.equibind import KEYPOINT_WEIGHTS, PRED_POSITIONS, RECEPTOR_KEYPOINTS
from eqtool.nn import scatter_sum

__all__ = ["docking_loss", "TRUE_POSITIONS"]

TRUE_POSITIONS = "ligand_positions_true"  # [Nl, 3] Å, target heavy-atom positions (receptor frame)


def docking_loss(out: dict, batch: dict, coordinates: float = 1.0, keypoints: float = 1.0,
                 geometry: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``w_c L_coord + w_k L_kp + w_g L_geom`` and its parts (plus the ligand RMSD and centroid error, Å).

    * ``L_coord``: mean over complexes of the mean squared heavy-atom error (EquiBind eq. 9).
    * ``L_kp``: the receptor keypoints against the ligand keypoints computed with the same attention
      weights from the *true* ligand coordinates, matched by optimal transport (EquiBind eq. 10; with
      uniform weights and K points on each side the transport plan is a permutation, found by
      ``scipy.optimize.linear_sum_assignment`` on the detached costs).
    * ``L_geom``: mean squared error of the predicted intra-ligand distances over the ligand edges
      (all heavy-atom pairs), a rotation-invariant shape term.
    """
    from scipy.optimize import linear_sum_assignment

    pred, true = out[PRED_POSITIONS], batch[TRUE_POSITIONS]
    index, n = batch["ligand_batch"], batch["ligand_n_atoms"]
    n_graphs = n.shape[0]
    sq = ((pred - true) ** 2).sum(-1)  # [Nl] Å^2
    per_complex = scatter_sum(sq, index, n_graphs) / n.to(sq.dtype)  # [B] mean squared error per atom
    coord = per_complex.mean()
    w = out[KEYPOINT_WEIGHTS]  # [Nl, K]
    kp_true = scatter_sum(w.unsqueeze(-1) * true.unsqueeze(1), index, n_graphs)  # [B, K, 3]
    kp_rec = out[RECEPTOR_KEYPOINTS]  # [B, K, 3]
    cost = ((kp_rec.unsqueeze(2) - kp_true.unsqueeze(1)) ** 2).sum(-1)  # [B, K, K]
    c = cost.detach().cpu().numpy()
    perm = np.stack([linear_sum_assignment(ci)[1] for ci in c])  # [B, K]
    perm_t = torch.as_tensor(perm, device=cost.device)
    kp = torch.gather(cost, 2, perm_t.unsqueeze(-1)).squeeze(-1).mean()
    s, r = batch["ligand_edge_index"]
    geom = (((pred[s] - pred[r]).norm(dim=-1) - (true[s] - true[r]).norm(dim=-1)) ** 2).mean()
    loss = coordinates * coord + keypoints * kp + geometry * geom
    centroid_pred = scatter_sum(pred, index, n_graphs) / n.unsqueeze(-1).to(pred.dtype)
    centroid_true = scatter_sum(true, index, n_graphs) / n.unsqueeze(-1).to(true.dtype)
    terms = {"coordinates": coord.detach(), "keypoints": kp.detach(), "geometry": geom.detach(),
             "rmsd": per_complex.detach().sqrt().mean(),
             "centroid": (centroid_pred - centroid_true).norm(dim=-1).detach().mean()}
    return loss, terms
