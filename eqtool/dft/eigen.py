"""Orbital energies from a Fock matrix and an overlap matrix (generalised eigenproblem)."""

from __future__ import annotations

import numpy as np

__all__ = ["orbital_energies"]


def orbital_energies(H, S, eig_clamp: float = 1e-8):
    """Solve ``H C = S C diag(eps)`` by symmetric (Löwdin) orthogonalisation.

    ``S = U diag(s) Uᵀ``; eigenvalues of ``S`` below ``eig_clamp`` are clamped to ``eig_clamp``
    (a near-linear-dependent basis would otherwise blow up ``S^-1/2``); ``X = U diag(s^-1/2) Uᵀ``,
    ``X H X = V diag(eps) Vᵀ``, ``C = X V``. Works on numpy arrays and torch tensors (with
    autograd), with optional leading batch dimensions.

    Args:
        H: ``[..., n_ao, n_ao]`` symmetric Fock/Kohn-Sham matrix, Hartree.
        S: ``[..., n_ao, n_ao]`` overlap matrix.
        eig_clamp: smallest eigenvalue of ``S`` kept as is.

    Returns:
        ``(eps [..., n_ao] ascending, Hartree; C [..., n_ao, n_ao], columns are MO coefficients,
        S-orthonormal: Cᵀ S C = 1)``.
    """
    if type(H).__module__.startswith("torch"):
        import torch

        s, U = torch.linalg.eigh(S)
        s = torch.clamp(s, min=eig_clamp)
        X = (U * s.rsqrt().unsqueeze(-2)) @ U.transpose(-1, -2)
        Hx = X @ H @ X
        eps, V = torch.linalg.eigh(0.5 * (Hx + Hx.transpose(-1, -2)))
        return eps, X @ V
    H = np.asarray(H)
    s, U = np.linalg.eigh(np.asarray(S))
    s = np.maximum(s, eig_clamp)
    X = (U * (1.0 / np.sqrt(s))[..., None, :]) @ np.swapaxes(U, -1, -2)
    Hx = X @ H @ X
    eps, V = np.linalg.eigh(0.5 * (Hx + np.swapaxes(Hx, -1, -2)))
    return eps, X @ V
