"""SPHNet's sparse gates (Luo et al., ICML 2025, arXiv:2502.01171) as reusable modules.

* :class:`SparsePairGate` -- a learned score per (unordered) atom pair from invariant pair
  descriptors; per system only the top ``ceil((1 - sparsity) * n_pairs)`` pairs are kept (they run
  the expensive tensor product) and the kept pairs are weighted by their score (so the gate learns).
* :class:`SparseTPGate` -- a learnable weight per Clebsch-Gordan path of a tensor product; only the
  top ``ceil((1 - sparsity) * n_paths)`` paths are computed, each scaled by its weight. Paths can be
  grouped by an output irrep that must not vanish (e.g. one nothing else in the model produces):
  each such group keeps its best path, and the top paths fill the remaining places.
* :class:`SparsityScheduler` -- the paper's three phases for the TP gates, by training step:
  ``random`` (a fresh random subset of paths every step, so every path is trained), ``adaptive``
  (the top paths by ``|weight|``, re-selected every step), ``fixed`` (the selection is frozen in a
  buffer and the pruned product is what inference runs).
* :class:`SparseNodeTP` -- :class:`eqtool.nn.NodeTP` with a :class:`SparseTPGate`: it computes
  only the input-irrep blocks and output rows of the active paths, so the work shrinks with the
  sparsity.

All gates are functions of invariants (scores, path weights), so they keep equivariance. With
``sparsity = 0`` both gates are the identity: every pair/path is kept with weight 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from eqtool.nn.mlp import MLP
from eqtool.nn.tensor_product import NodeTP

__all__ = ["SparsePairGate", "SparseTPGate", "SparseNodeTP", "SparsityScheduler", "PHASES", "n_keep"]

PHASES = ("random", "adaptive", "fixed")


def n_keep(n: int | torch.Tensor, sparsity: float):
    """Items of ``n`` a gate keeps: ``ceil((1 - sparsity) n)``, at least 1 if ``n > 0``."""
    if isinstance(n, torch.Tensor):
        k = torch.ceil((1.0 - sparsity) * n.to(torch.float64) - 1e-9).long()
        return torch.where(n > 0, k.clamp(min=1), torch.zeros_like(k))
    return 0 if n == 0 else max(1, math.ceil((1.0 - sparsity) * n - 1e-9))


def _check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return s


class SparsePairGate(nn.Module):
    """Keep the top pairs of each system by a learned invariant score.

    ``forward(desc [P, F], system [P]) -> (keep [K] long, weight [K])``: indices into the ``P``
    pairs (sorted by system, then by decreasing score) and their gate ``sigmoid(MLP(desc))`` in
    (0, 1). ``desc`` must be invariant (and symmetric in the two atoms for unordered pairs).
    Per system ``b`` with ``P_b`` pairs, ``ceil((1 - sparsity) P_b)`` are kept. With
    ``sparsity = 0`` every pair is kept with weight 1 and the module has no parameters.

    Args:
        in_features: ``F``.
        sparsity: fraction of pairs dropped, in [0, 1).
        hidden: width of the score MLP.
    """

    def __init__(self, in_features: int, sparsity: float, hidden: int = 32):
        super().__init__()
        self.sparsity = _check_sparsity(sparsity)
        self.score = MLP([in_features, hidden, 1], bias=True) if self.sparsity > 0 else None

    def forward(self, desc: torch.Tensor, system: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        P = desc.shape[0]
        if self.score is None or P == 0:
            return torch.arange(P, device=desc.device), desc.new_ones(P)
        gate = torch.sigmoid(self.score(desc).squeeze(-1))  # [P]
        # rank within each system by decreasing score: sort by score, then stably by system
        order = torch.argsort(gate.detach(), descending=True, stable=True)
        order = order[torch.argsort(system[order], stable=True)]  # [P], grouped by system
        counts = torch.bincount(system, minlength=int(system.max()) + 1)  # [B]
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(P, device=desc.device) - starts[system[order]]
        keep = order[rank < n_keep(counts, self.sparsity)[system[order]]]  # [K]
        return keep, gate[keep]

    def extra_repr(self) -> str:
        return f"sparsity={self.sparsity}"


class SparseTPGate(nn.Module):
    """A learnable weight per tensor-product path and the set of active paths.

    ``forward() -> (active [k] long, weight [n_paths])``: the active path indices (sorted) and the
    per-path weights (``1`` everywhere with ``sparsity = 0``). Which paths are active depends on
    :attr:`phase` (set by :class:`SparsityScheduler`) and on ``self.training``:

    * training, ``random``: ``k`` paths drawn uniformly (``torch.randperm``, global RNG);
    * training, ``adaptive`` -- and evaluation before ``fixed``: the top ``k`` by ``|weight|``;
    * ``fixed``: the frozen buffer :attr:`mask` (set once by :meth:`freeze`).

    With ``groups``, the ``k`` paths always include the best (by the same ranking: ``|weight|``, or
    the random draw) of each required group.

    Buffers ``phase_index`` (0/1/2) and ``mask`` are saved in ``state_dict`` (and checkpoints).

    Args:
        n_paths: number of CG paths.
        sparsity: fraction of paths pruned, in [0, 1).
        groups: per path, the index of the required group it belongs to (``-1``: none), e.g. its
            output irrep when that irrep has no other source; at most ``k`` groups.
    """

    def __init__(self, n_paths: int, sparsity: float, groups: Sequence[int] | None = None):
        super().__init__()
        self.sparsity = _check_sparsity(sparsity)
        self.n_paths = int(n_paths)
        self.k = n_keep(self.n_paths, self.sparsity)
        groups = [-1] * self.n_paths if groups is None else [int(g) for g in groups]
        if len(groups) != self.n_paths:
            raise ValueError(f"groups has {len(groups)} entries for {self.n_paths} paths")
        n_groups = len({g for g in groups if g >= 0})
        if n_groups > self.k:
            raise ValueError(f"{n_groups} required groups do not fit in the {self.k} paths kept at "
                             f"sparsity {self.sparsity}")
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(self.n_paths)) if self.sparsity > 0 else None
        self.register_buffer("phase_index", torch.zeros((), dtype=torch.long))
        self.register_buffer("mask", torch.ones(self.n_paths, dtype=torch.bool))

    @property
    def phase(self) -> str:
        return PHASES[int(self.phase_index)]

    def set_phase(self, phase: str) -> None:
        """Enter ``phase``; entering ``fixed`` freezes the current top paths (:meth:`freeze`)."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; one of {PHASES}")
        if phase == "fixed" and self.phase != "fixed":
            self.freeze()
        self.phase_index.fill_(PHASES.index(phase))

    def top_paths(self) -> torch.Tensor:
        """The ``k`` paths of largest ``|weight|`` (ties to the lower index) covering every group, sorted."""
        if self.weight is None:
            return torch.arange(self.n_paths, device=self.mask.device)
        return self._select(torch.argsort(self.weight.detach().abs(), descending=True, stable=True))

    def _select(self, order: torch.Tensor) -> torch.Tensor:
        """The first path of ``order`` in each required group, then the next ones in ``order`` up to ``k``."""
        ranked = order.tolist()
        chosen, seen = [], set()
        for p in ranked:
            g = self.groups[p]
            if g >= 0 and g not in seen:
                seen.add(g)
                chosen.append(p)
        taken = set(chosen)
        chosen += [p for p in ranked if p not in taken][: self.k - len(chosen)]
        return torch.tensor(sorted(chosen), dtype=torch.long, device=order.device)

    @torch.no_grad()
    def freeze(self) -> None:
        """Fix the active paths to the current top-``k`` and switch to the ``fixed`` phase."""
        mask = torch.zeros_like(self.mask)
        mask[self.top_paths()] = True
        self.mask.copy_(mask)
        self.phase_index.fill_(PHASES.index("fixed"))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.weight is None:
            return torch.arange(self.n_paths, device=self.mask.device), torch.ones(self.n_paths)
        phase = self.phase
        if phase == "fixed":
            active = self.mask.nonzero().squeeze(-1)
        elif phase == "random" and self.training:
            active = self._select(torch.randperm(self.n_paths, device=self.mask.device))
        else:
            active = self.top_paths()
        return active, self.weight

    def extra_repr(self) -> str:
        return f"n_paths={self.n_paths}, keep={self.k}, sparsity={self.sparsity}"


class SparseNodeTP(nn.Module):
    """:class:`~eqtool.nn.NodeTP` ("uuu") with a :class:`SparseTPGate` on its paths.

    ``forward(x [N, D1, C], y [N, D2, C]) -> [N, D_out, C]`` with irreps :attr:`irs_out`;
    inactive paths are zero and active path ``p`` is scaled by ``weight[p]``. Only the input-irrep
    blocks and output rows of active paths are computed (:meth:`NodeTP.blockwise`). With
    ``sparsity = 0`` this equals ``NodeTP`` exactly. ``required``: output irreps that keep at least
    one path (those the model gets from nowhere else; pruning all their paths would zero that part
    of the output for good).

    ``copies = k``: :class:`~eqtool.nn.NodeTP`'s copies -- the channel blocks of ``x`` and ``y`` act as
    ``k`` copies of their irreps and every copy meets every copy: ``k^2`` times the paths (partly
    redundant, for the gate to choose from) and ``k`` times the dense work.
    """

    def __init__(self, irs1, irs2, irs_target, sparsity: float = 0.0, required: Sequence = (),
                 copies: int = 1):
        super().__init__()
        self.copies = int(copies)
        self.tp = NodeTP(irs1, irs2, irs_target, copies=self.copies)
        self.n_paths = self.tp.n_paths
        self.irs_out = self.tp.irs_out
        need = [o3.Irrep(ir) for ir in required]
        missing = [str(ir) for ir in need if ir not in self.irs_out]
        if missing:
            raise ValueError(f"required irreps {missing} have no path")
        groups = [need.index(ir) if ir in need else -1 for _, _, ir in self.tp.paths]
        self.gate = SparseTPGate(self.n_paths, sparsity, groups)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        active, weight = self.gate()
        if self.gate.weight is None:
            return self.tp(x, y)
        return self.tp.blockwise(x, y, active.tolist(), weight)  # [N, D_out, C]


class SparsityScheduler:
    """SPHNet's three-phase schedule for every :class:`SparseTPGate` in a model, by training step.

    Steps ``[0, random_steps)``: ``random``; ``[random_steps, random_steps + adaptive_steps)``:
    ``adaptive``; afterwards ``fixed`` (the top paths at that moment are frozen for good).

    Args:
        random_steps, adaptive_steps: lengths of the first two phases in optimiser steps (>= 0).
    """

    def __init__(self, random_steps: int, adaptive_steps: int):
        if random_steps < 0 or adaptive_steps < 0:
            raise ValueError("phase lengths must be >= 0")
        self.random_steps, self.adaptive_steps = int(random_steps), int(adaptive_steps)

    def phase(self, step: int) -> str:
        if step < self.random_steps:
            return "random"
        if step < self.random_steps + self.adaptive_steps:
            return "adaptive"
        return "fixed"

    def apply(self, model: nn.Module, step: int) -> str:
        """Set the phase of every TP gate in ``model`` for ``step``; return the phase.

        Phases only move forward: a gate already ``fixed`` stays fixed.
        """
        phase = self.phase(step)
        for m in model.modules():
            if isinstance(m, SparseTPGate) and m.weight is not None:
                if PHASES.index(phase) > int(m.phase_index):
                    m.set_phase(phase)
        return phase
