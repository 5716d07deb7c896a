"""Hamiltonian accuracy metrics as QH9 / QHNet define them.

Per system (all energies in µHa = 1e-6 Hartree):

* ``h_mae`` -- mean |H_pred - H_ref| over all ``n_ao²`` matrix elements; ``h_mae_diag`` over the
  elements of the on-site blocks (i, i), ``h_mae_offdiag`` over the blocks (i, j), i != j.
* ``occ_energy_mae`` -- mean |eps_pred - eps_ref| over the occupied orbitals (both from the
  reference overlap, :func:`eqtool.dft.eigen.orbital_energies`).
* ``psi`` (%) -- mean over occupied orbitals k of |cos(C_pred[:, k], C_ref[:, k])|, the plain
  cosine over AO coefficients (QH9's ``torch.cosine_similarity(..., dim=AO).abs().mean()``).
* ``homo_err``, ``lumo_err``, ``gap_err`` -- absolute errors of HOMO, LUMO and gap.

:func:`aggregate_metrics` averages per-system values over systems (every molecule weighs the same).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from eqtool.dft.basis import ao_slices
from eqtool.dft.eigen import orbital_energies
from eqtool.errors import EqtoolError

__all__ = ["METRIC_UNITS", "hamiltonian_metrics", "aggregate_metrics", "frontier"]

UHA = 1e6  # Hartree -> µHa
METRIC_UNITS: dict[str, str] = {
    "h_mae": "µHa", "h_mae_diag": "µHa", "h_mae_offdiag": "µHa", "occ_energy_mae": "µHa",
    "psi": "%", "homo_err": "µHa", "lumo_err": "µHa", "gap_err": "µHa",
}


def _np(x) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def frontier(eps, n_occ: int) -> tuple[float, float, float]:
    """``(homo, lumo, gap)`` in Hartree from ascending orbital energies ``[n_ao]``; LUMO = NaN if none."""
    eps = _np(eps)
    homo = float(eps[n_occ - 1])
    lumo = float(eps[n_occ]) if n_occ < len(eps) else float("nan")
    return homo, lumo, lumo - homo


def hamiltonian_metrics(H_pred, H_ref, S, n_occ: int, atomic_numbers,
                        eig_clamp: float = 1e-8) -> dict[str, float]:
    """Metrics of one system (see module docstring for definitions and units).

    Args:
        H_pred, H_ref: ``[n_ao, n_ao]`` Fock matrices, Hartree (numpy or torch).
        S: ``[n_ao, n_ao]`` reference overlap.
        n_occ: number of doubly occupied orbitals (electrons // 2).
        atomic_numbers: ``[n]``, to find the on-site blocks.
    """
    Hp, Hr, S = _np(H_pred), _np(H_ref), _np(S)
    if Hp.shape != Hr.shape or Hp.shape != S.shape or Hp.ndim != 2:
        raise EqtoolError(f"shapes of predicted H {list(Hp.shape)}, reference H {list(Hr.shape)} and "
                          f"overlap {list(S.shape)} differ", "hamiltonian")
    if not 0 < n_occ <= Hp.shape[0]:
        raise EqtoolError(f"n_occ={n_occ} is outside 1..{Hp.shape[0]}", "hamiltonian")
    err = np.abs(Hp - Hr)
    diag = np.zeros_like(err, dtype=bool)
    for sl in ao_slices(atomic_numbers):
        diag[sl, sl] = True
    if diag.shape != err.shape:
        raise EqtoolError("AO count of the atoms does not match the matrix size", "hamiltonian")
    eps_p, C_p = orbital_energies(Hp, S, eig_clamp)
    eps_r, C_r = orbital_energies(Hr, S, eig_clamp)
    occ = slice(0, n_occ)
    cp, cr = C_p[:, occ], C_r[:, occ]
    cos = np.abs((cp * cr).sum(0)) / (np.linalg.norm(cp, axis=0) * np.linalg.norm(cr, axis=0))
    hp, lp, gp = frontier(eps_p, n_occ)
    hr, lr, gr = frontier(eps_r, n_occ)
    return {
        "h_mae": float(err.mean()) * UHA,
        "h_mae_diag": float(err[diag].mean()) * UHA,
        "h_mae_offdiag": float(err[~diag].mean()) * UHA if (~diag).any() else 0.0,
        "occ_energy_mae": float(np.abs(eps_p[occ] - eps_r[occ]).mean()) * UHA,
        "psi": float(cos.mean()) * 100.0,
        "homo_err": abs(hp - hr) * UHA,
        "lumo_err": abs(lp - lr) * UHA,
        "gap_err": abs(gp - gr) * UHA,
    }


def aggregate_metrics(per_system: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over systems (NaN-free entries only)."""
    if not per_system:
        return {}
    return {k: float(np.nanmean([m[k] for m in per_system])) for k in per_system[0]}
