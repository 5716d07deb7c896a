"""Model checks usable on ANY energy model of the registry (nequip ``model_tests_basic`` style).

Every ``check_*`` takes ``(model, graphs, dtype)``, runs a copy of the model converted to
``dtype`` through :func:`eqtool.physics.compute_outputs`, and returns the largest error over
energy per atom, per-atom energies, forces and (fully periodic systems) stress. Errors are
``max|a - b| / max(1, max|b|)``: absolute for outputs of order one, relative for larger ones.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from eqtool.data import keys as K
from eqtool.data.batch import collate
from eqtool.data.graph import AtomGraph
from eqtool.physics import compute_outputs

__all__ = [
    "CheckResult", "INVARIANCE_TOL", "FD_TOL", "predict", "check_rotation_equivariance",
    "check_translation_invariance", "check_permutation_equivariance", "check_periodic_images",
    "check_batch_consistency", "check_forces_finite_difference", "check_stress_finite_difference",
    "run_all_checks",
]

INVARIANCE_TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
FD_TOL = 1e-6  # finite differences always run in float64


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: ``error`` (see module docstring) against ``tol``."""

    name: str
    error: float
    tol: float
    passed: bool


def _as(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    return copy.deepcopy(model).to(dtype).eval()


def _graph(g: AtomGraph, **changes) -> AtomGraph:
    fields = dict(positions=g.positions, atomic_numbers=g.atomic_numbers, cell=g.cell, pbc=g.pbc)
    fields.update(changes)
    return AtomGraph(**fields, source=g.source)


def predict(model: nn.Module, graphs: Sequence[AtomGraph], dtype: torch.dtype) -> list[dict]:
    """Per-graph float64 numpy outputs (energy, energies, forces, stress if fully periodic).

    ``model`` is used as given (already in ``dtype``); the graphs are batched together.
    """
    batch = collate(list(graphs), dtype=dtype, cutoff=model.cutoff)
    periodic = bool(batch[K.PBC].all(dim=1).any())
    out = compute_outputs(model, batch, forces=True, stress=periodic)
    n = batch[K.N_ATOMS].tolist()
    offs = np.concatenate([[0], np.cumsum(n)])
    res = []
    for b, g in enumerate(graphs):
        sl = slice(offs[b], offs[b + 1])
        r = {"energy": np.array([out[K.ENERGY][b].item() / n[b]]),
             "energies": out[K.ENERGIES][sl].double().numpy(),
             "forces": out[K.FORCES][sl].double().numpy()}
        if g.pbc.all():
            r["stress"] = out[K.STRESS][b].double().numpy()
        res.append(r)
    return res


def _err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b))))) if b.size else 0.0


def _compare(pred: list[dict], ref: list[dict]) -> float:
    return max(_err(p[k], r[k]) for p, r in zip(pred, ref, strict=False) for k in r)


def _rotation(rng: np.random.Generator, proper: bool) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q if proper else -q


def check_rotation_equivariance(model, graphs, dtype=torch.float64, seed: int = 0,
                                reflections: bool = True) -> float:
    """E invariant, F -> F R^T, stress -> R S R^T under a random rotation (and its improper ``-R``)."""
    m = _as(model, dtype)
    ref = predict(m, graphs, dtype)
    rng = np.random.default_rng(seed)
    errs = []
    for proper in (True, False) if reflections else (True,):
        R = _rotation(rng, proper)
        rot = [_graph(g, positions=g.positions @ R.T, cell=g.cell @ R.T) for g in graphs]
        pred = predict(m, rot, dtype)
        back = [{k: (v @ R if k == "forces" else R.T @ v @ R if k == "stress" else v) for k, v in p.items()}
                for p in pred]
        errs.append(_compare(back, ref))
    return max(errs)


def check_translation_invariance(model, graphs, dtype=torch.float64, seed: int = 0) -> float:
    """Everything invariant under a random translation of all atoms."""
    m = _as(model, dtype)
    t = np.random.default_rng(seed).uniform(-3.0, 3.0, 3)
    return _compare(predict(m, [_graph(g, positions=g.positions + t) for g in graphs], dtype),
                    predict(m, graphs, dtype))


def check_permutation_equivariance(model, graphs, dtype=torch.float64, seed: int = 0) -> float:
    """Per-atom outputs permute with the atoms; energy and stress are invariant."""
    m = _as(model, dtype)
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(g.n_atoms) for g in graphs]
    pg = [_graph(g, positions=g.positions[p], atomic_numbers=g.atomic_numbers[p])
          for g, p in zip(graphs, perms, strict=True)]
    ref = predict(m, graphs, dtype)
    for r, p in zip(ref, perms, strict=False):
        r["energies"], r["forces"] = r["energies"][p], r["forces"][p]
    return _compare(predict(m, pg, dtype), ref)


def check_periodic_images(model, graphs, dtype=torch.float64, seed: int = 0) -> float:
    """Moving atoms by lattice vectors along periodic directions changes nothing (0 if none periodic)."""
    periodic = [g for g in graphs if g.pbc.any()]
    if not periodic:
        return 0.0
    m = _as(model, dtype)
    rng = np.random.default_rng(seed)
    moved = []
    for g in periodic:
        n = rng.integers(-1, 2, size=(g.n_atoms, 3)) * g.pbc
        n[0] = np.where(g.pbc, 1, 0)  # at least one atom really moves
        moved.append(_graph(g, positions=g.positions + n @ g.cell))
    return _compare(predict(m, moved, dtype), predict(m, periodic, dtype))


def check_batch_consistency(model, graphs, dtype=torch.float64) -> float:
    """Outputs of the batched graphs equal those of each graph alone."""
    m = _as(model, dtype)
    single = [predict(m, [g], dtype)[0] for g in graphs]
    return _compare(predict(m, graphs, dtype), single)


def _energy_fn(model, graph: AtomGraph):
    batch = collate([graph], dtype=torch.float64, cutoff=model.cutoff)  # edges fixed: exact FD

    def energy(pos: torch.Tensor, cell: torch.Tensor) -> float:
        with torch.no_grad():
            return float(model({**batch, K.POSITIONS: pos, K.CELL: cell})[K.ENERGY].sum())

    return batch, energy


def check_forces_finite_difference(model, graphs, dtype=torch.float64, h: float = 1e-4,
                                   n_components: int = 6, seed: int = 0) -> float:
    """Forces vs central differences of the energy (float64, ``n_components`` per graph).

    ``dtype`` is ignored: finite differences are only meaningful in float64.
    """
    m = _as(model, torch.float64)
    rng = np.random.default_rng(seed)
    errs = []
    for g in graphs:
        batch, energy = _energy_fn(m, g)
        forces = compute_outputs(m, batch)[K.FORCES].numpy()
        pos, cell = batch[K.POSITIONS], batch[K.CELL]
        idx = rng.choice(g.n_atoms * 3, size=min(n_components, g.n_atoms * 3), replace=False)
        fd = np.empty(len(idx))
        for k, flat in enumerate(idx):
            d = torch.zeros_like(pos).view(-1)
            d[flat] = h
            d = d.view_as(pos)
            fd[k] = -(energy(pos + d, cell) - energy(pos - d, cell)) / (2 * h)
        errs.append(_err(fd, forces.reshape(-1)[idx]))
    return max(errs)


def check_stress_finite_difference(model, graphs, dtype=torch.float64, h: float = 1e-5) -> float:
    """Stress vs central differences under symmetric finite strain (fully periodic graphs; float64)."""
    m = _as(model, torch.float64)
    errs = []
    for g in graphs:
        if not g.pbc.all():
            continue
        batch, energy = _energy_fn(m, g)
        stress = compute_outputs(m, batch, forces=False, stress=True)[K.STRESS][0].numpy()
        pos, cell = batch[K.POSITIONS], batch[K.CELL]
        volume = abs(float(torch.linalg.det(cell[0])))
        fd = np.zeros((3, 3))
        for i in range(3):
            for j in range(i, 3):
                eps = torch.zeros(3, 3, dtype=torch.float64)
                eps[i, j] += h / 2
                eps[j, i] += h / 2
                e = [energy(pos + s * pos @ eps, cell + s * cell @ eps) for s in (1.0, -1.0)]
                fd[i, j] = fd[j, i] = (e[0] - e[1]) / (2 * h * volume)
        errs.append(_err(fd, stress))
    return max(errs, default=0.0)


def run_all_checks(model, graphs, dtype=torch.float64) -> list[CheckResult]:
    """Run every check; invariance tolerance from :data:`INVARIANCE_TOL`, FD ones :data:`FD_TOL`."""
    tol = INVARIANCE_TOL.get(dtype, 1e-5)
    checks = [
        ("rotation", check_rotation_equivariance, tol),
        ("translation", check_translation_invariance, tol),
        ("permutation", check_permutation_equivariance, tol),
        ("periodic_images", check_periodic_images, tol),
        ("batch_consistency", check_batch_consistency, tol),
        ("forces_fd", check_forces_finite_difference, FD_TOL),
        ("stress_fd", check_stress_finite_difference, FD_TOL),
    ]
    results = []
    for name, fn, t in checks:
        err = fn(model, graphs, dtype)
        results.append(CheckResult(name, err, t, bool(err <= t)))
    return results
