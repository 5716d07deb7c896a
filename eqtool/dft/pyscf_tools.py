"""PySCF glue: build a molecule, run RKS, start an SCF from a predicted Hamiltonian.

PySCF is an optional dependency (the ``dft`` extra); it is imported inside the functions and a
missing install raises :class:`EqtoolError` naming ``pip install 'eqtool[dft]'``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eqtool.dft.basis import BASIS
from eqtool.dft.eigen import orbital_energies
from eqtool.errors import EqtoolError

__all__ = ["XC", "GRID_LEVEL", "pyscf_version", "build_mol", "run_rks", "RKSResult", "scf_from_guess"]

XC = "b3lyp"
GRID_LEVEL = 3  # PySCF's default Becke/Treutler grid level


def _pyscf():
    try:
        import pyscf
        from pyscf import dft, gto  # noqa: F401
    except ImportError:
        raise EqtoolError("PySCF is not installed; install the DFT extra: pip install 'eqtool[dft]'",
                          "pyscf") from None
    return pyscf


def pyscf_version() -> str:
    return _pyscf().__version__


def build_mol(atomic_numbers, positions_angstrom, basis: str = BASIS, charge: int = 0, spin: int = 0):
    """A PySCF ``Mole`` in spherical AOs (``cart=False``), coordinates in Å, quiet.

    Args:
        atomic_numbers: ``[n]`` int.
        positions_angstrom: ``[n, 3]`` Å.
        basis: basis set name (def2-SVP by default).
        charge, spin: total charge and 2S.

    Raises:
        EqtoolError: PySCF missing, or PySCF rejects the molecule (odd electron count, unknown basis).
    """
    _pyscf()
    from pyscf import gto

    z = np.asarray(atomic_numbers, dtype=np.int64).reshape(-1)
    pos = np.asarray(positions_angstrom, dtype=np.float64).reshape(-1, 3)
    mol = gto.Mole()
    mol.atom = [(int(zi), tuple(p)) for zi, p in zip(z.tolist(), pos, strict=True)]
    mol.unit = "Angstrom"
    mol.basis = basis
    mol.cart = False
    mol.charge = charge
    mol.spin = spin
    mol.verbose = 0
    try:
        mol.build()
    except (RuntimeError, KeyError, ValueError) as exc:
        raise EqtoolError(f"PySCF could not build the molecule: {exc}", "pyscf") from None
    return mol


def _rks(mol, xc: str, grid_level: int, conv_tol: float, max_cycle: int):
    from pyscf import dft

    mf = dft.RKS(mol)
    mf.xc = xc
    mf.grids.level = grid_level
    mf.conv_tol = conv_tol
    mf.max_cycle = max_cycle
    mf.verbose = 0
    return mf


@dataclass(frozen=True)
class RKSResult:
    """A converged restricted Kohn-Sham calculation (Hartree, PySCF AO order).

    Attributes:
        fock: ``[n_ao, n_ao]`` converged Fock/KS matrix ``mf.get_fock()``.
        overlap: ``[n_ao, n_ao]``.
        energy: total energy, Hartree.
        mo_energy: ``[n_ao]`` ascending, Hartree.
        n_occ: doubly occupied orbitals.
        converged: PySCF's flag.
        cycles: SCF iterations used.
    """

    fock: np.ndarray
    overlap: np.ndarray
    energy: float
    mo_energy: np.ndarray
    n_occ: int
    converged: bool
    cycles: int


def run_rks(mol, xc: str = XC, grid_level: int = GRID_LEVEL, conv_tol: float = 1e-10,
            max_cycle: int = 100, dm0=None) -> RKSResult:
    """Run RKS (default B3LYP) and return the converged Fock matrix and friends.

    Falls back to second-order SCF (``mf.newton()``) if DIIS does not converge.
    """
    mf = _rks(mol, xc, grid_level, conv_tol, max_cycle)
    cycles = [0]
    mf.callback = lambda envs: cycles.__setitem__(0, cycles[0] + 1)
    e = mf.kernel(dm0=dm0)
    if not mf.converged:
        mf = mf.newton()
        mf.callback = lambda envs: cycles.__setitem__(0, cycles[0] + 1)
        e = mf.kernel(mf.mo_coeff, mf.mo_occ)
    return RKSResult(fock=np.asarray(mf.get_fock()), overlap=np.asarray(mf.get_ovlp()), energy=float(e),
                     mo_energy=np.asarray(mf.mo_energy), n_occ=int(mol.nelectron // 2),
                     converged=bool(mf.converged), cycles=cycles[0])


def scf_from_guess(mol, H_pred, S=None, xc: str = XC, grid_level: int = GRID_LEVEL,
                   conv_tol: float = 1e-9, max_cycle: int = 100, eig_clamp: float = 1e-8) -> dict:
    """Run RKS twice -- from the predicted Hamiltonian and from PySCF's minao guess -- and count cycles.

    The predicted guess is ``dm0 = 2 C_occ C_occᵀ`` with ``C`` from :func:`orbital_energies`
    of ``(H_pred, S)``. Cycles are counted by an SCF callback (one call per iteration).

    Args:
        mol: a PySCF ``Mole`` (e.g. from :func:`build_mol`), closed shell.
        H_pred: ``[n_ao, n_ao]`` predicted Fock matrix, Hartree (numpy or torch).
        S: ``[n_ao, n_ao]`` overlap; computed from ``mol`` if None.

    Returns:
        dict with ``cycles_guess``, ``cycles_minao``, ``ratio`` (guess / minao), ``energy_guess``,
        ``energy_minao`` (Hartree), ``converged_guess``, ``converged_minao``.
    """
    _pyscf()
    if type(H_pred).__module__.startswith("torch"):
        H_pred = H_pred.detach().cpu().double().numpy()
    H_pred = np.asarray(H_pred, dtype=np.float64)
    if H_pred.shape != (mol.nao, mol.nao):
        raise EqtoolError(f"predicted Hamiltonian has shape {list(H_pred.shape)}, the molecule has "
                          f"{mol.nao} AOs in {mol.basis}", "hamiltonian")
    if mol.spin != 0:
        raise EqtoolError("scf_from_guess needs a closed-shell molecule (spin 0)", "pyscf")
    S = mol.intor("int1e_ovlp") if S is None else np.asarray(S, dtype=np.float64)
    _, C = orbital_energies(H_pred, S, eig_clamp)
    c_occ = C[:, : mol.nelectron // 2]
    dm0 = 2.0 * c_occ @ c_occ.T
    out = {}
    for tag, guess in (("guess", dm0), ("minao", None)):
        mf = _rks(mol, xc, grid_level, conv_tol, max_cycle)
        count = [0]
        mf.callback = lambda envs, count=count: count.__setitem__(0, count[0] + 1)
        if guess is None:
            mf.init_guess = "minao"
        e = mf.kernel(dm0=guess)
        out[f"cycles_{tag}"] = count[0]
        out[f"energy_{tag}"] = float(e)
        out[f"converged_{tag}"] = bool(mf.converged)
    out["ratio"] = out["cycles_guess"] / max(1, out["cycles_minao"])
    return out
