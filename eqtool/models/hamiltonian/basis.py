"""Atomic-orbital bases of the Hamiltonian models and the PySCF <-> e3nn change of basis.

AO order within an atom is PySCF's for spherical basis functions: shells in the order of the basis
set, components ``p = (x, y, z)`` and ``d = (xy, yz, z^2, xz, x^2 - y^2)`` (real spherical ``m = -2..2``).
e3nn's real spherical harmonics use other component orders/signs for ``l >= 2``; :func:`change_of_basis`
finds the orthogonal map between the two numerically (a least-squares fit of e3nn's harmonics to the
Cartesian forms of PySCF's), so it follows whatever convention the installed e3nn uses.
``tests/test_hamiltonian.py`` checks it against PySCF's own AO values and rotated overlap matrices.

Units: Hartree for matrix elements; AO blocks are padded to :data:`MAX_AO` = 14.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from e3nn import o3

from eqtool.errors import EqtoolError

__all__ = ["BASES", "MAX_AO", "shells", "ao_count", "ao_irreps", "change_of_basis", "ao_rotation",
           "check_basis", "FULL_SHELLS"]

MAX_AO = 14
_HEAVY = (0, 0, 0, 1, 1, 2)  # 3s2p1d
# basis name -> {Z: angular momenta of the shells, in PySCF order}
BASES: dict[str, dict[int, tuple[int, ...]]] = {
    "def2-svp": {1: (0, 0, 1), 6: _HEAVY, 7: _HEAVY, 8: _HEAVY, 9: _HEAVY},
}
# the layout every block is predicted in (the union of the element shells); H uses shells 0, 1, 3
FULL_SHELLS = _HEAVY


def check_basis(basis: str) -> str:
    """Normalise a basis name (``"def2-SVP"`` -> ``"def2-svp"``); unknown names raise :class:`EqtoolError`."""
    key = str(basis).lower().replace("_", "-")
    if key not in BASES:
        raise EqtoolError(f"basis {basis!r} is not supported by the Hamiltonian models (available: "
                          f"{', '.join(BASES)})", source="model")
    return key


def shells(basis: str, z: int) -> tuple[int, ...]:
    """Angular momenta of the shells of element ``z`` in ``basis``."""
    table = BASES[check_basis(basis)]
    if int(z) not in table:
        from ase.data import chemical_symbols

        raise EqtoolError(f"element {chemical_symbols[int(z)]} has no {basis} basis in eqtool (supported: "
                          f"{', '.join(chemical_symbols[k] for k in table)})", source="model")
    return table[int(z)]


def ao_count(basis: str, z: int) -> int:
    """Number of spherical AOs of element ``z``."""
    return sum(2 * l + 1 for l in shells(basis, z))


def ao_irreps(basis: str, z: int) -> o3.Irreps:
    """The AOs of element ``z`` as O(3) irreps (``p`` is odd, ``1o``), e.g. ``2x0e+1x1o`` for H."""
    return o3.Irreps([(1, (l, (-1) ** l)) for l in shells(basis, z)])


def _cartesian_forms(l: int, x: torch.Tensor) -> torch.Tensor:
    """PySCF's real spherical harmonics of degree ``l`` (component normalisation) at unit vectors ``x``."""
    a, b, c = x.unbind(-1)
    if l == 0:
        return torch.ones_like(a)[:, None]
    if l == 1:
        return math.sqrt(3) * x
    if l == 2:
        s15 = math.sqrt(15)
        return torch.stack([s15 * a * b, s15 * b * c, math.sqrt(5) / 2 * (3 * c * c - 1), s15 * a * c,
                            s15 / 2 * (a * a - b * b)], dim=-1)
    raise ValueError(f"l = {l} is not supported (s, p, d only)")


@functools.cache
def _change_of_basis(l: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(64, 3, dtype=torch.float64, generator=gen), dim=-1)
    y = o3.spherical_harmonics(l, x, normalize=True, normalization="component")  # [64, 2l+1] e3nn
    target = _cartesian_forms(l, x)  # [64, 2l+1] PySCF order
    M = torch.linalg.lstsq(y, target).solution  # target = y @ M
    M = torch.where(M.abs() < 1e-12, torch.zeros_like(M), M)  # exact zeros, not 1e-17 noise
    if not torch.allclose(M @ M.T, torch.eye(2 * l + 1, dtype=torch.float64), atol=1e-10):
        raise RuntimeError(f"e3nn and PySCF l={l} harmonics differ by more than a rotation")
    return M


def change_of_basis(l: int) -> torch.Tensor:
    """Orthogonal ``[2l+1, 2l+1]`` float64 ``M``: ``v_pyscf = M^T v_e3nn``, ``Y_pyscf = Y_e3nn @ M``."""
    return _change_of_basis(int(l)).clone()


def ao_rotation(basis: str, atomic_numbers: Sequence[int], R: torch.Tensor) -> torch.Tensor:
    """Block-diagonal ``[n_ao, n_ao]`` matrix ``U`` with ``H(R x) = U H(x) U^T`` in PySCF AO order.

    ``R`` is a 3x3 proper or improper rotation acting on positions as ``x -> x @ R.T``.
    """
    from eqtool.nn.irreps import wigner_D

    blocks = []
    for z in atomic_numbers:
        for l in shells(basis, int(z)):
            M = _change_of_basis(l)
            D = wigner_D(o3.Irrep(l, (-1) ** l), R.to(torch.float64))  # e3nn basis
            blocks.append(M.T @ D @ M)
    return torch.block_diag(*blocks)
