"""def2-SVP atomic-orbital layout and the AO-block <-> matrix conversions.

Layout (PySCF, spherical harmonics, ``mol.cart = False``): AOs are grouped by atom in atom order;
within an atom, shells in basis order -- all s shells, then all p shells, then d. A p shell is
ordered ``(x, y, z)`` (PySCF's convention for l = 1, i.e. m = +1, -1, 0), a d shell
``(xy, yz, z², xz, x²-y²)`` (m = -2..2). def2-SVP: H 2s1p = 5 AOs ``s s p p p``;
C/N/O/F 3s2p1d = 14 AOs ``s s s px py pz px py pz dxy dyz dz2 dxz dx2-y2``.

Blocks: a system of ``n`` atoms stores its ``[n_ao, n_ao]`` matrix as ``n*n`` blocks
``[n*n, MAX_AO, MAX_AO]`` (``MAX_AO = 14``), row-major over the ordered atom pair ``(i, j)``;
block ``(i, j)`` holds rows of atom ``i``'s AOs and columns of atom ``j``'s, zero-padded past the
atom's AO count (the ``pair`` level of :mod:`eqtool.data.keys`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eqtool.errors import EqtoolError

__all__ = [
    "BASIS", "MAX_AO", "AO_COUNTS", "AO_IRREPS", "ao_counts", "ao_slices", "ao_index",
    "matrix_from_blocks", "blocks_from_matrix",
]

BASIS = "def2-svp"
MAX_AO = 14
# Z -> number of spherical AOs in def2-SVP (checked against PySCF in tests/test_dft.py)
AO_COUNTS: dict[int, int] = {1: 5, 6: 14, 7: 14, 8: 14, 9: 14}
# Z -> irreps of the atom's AOs in PySCF order (p is odd: 1o); e3nn notation
AO_IRREPS: dict[int, str] = {1: "2x0e+1x1o", 6: "3x0e+2x1o+1x2e", 7: "3x0e+2x1o+1x2e",
                             8: "3x0e+2x1o+1x2e", 9: "3x0e+2x1o+1x2e"}
_SYMBOL = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}


def ao_counts(atomic_numbers: Sequence[int] | np.ndarray) -> np.ndarray:
    """AOs per atom ``[n]`` int64 for def2-SVP.

    Raises:
        EqtoolError: for an element outside the supported set (H, C, N, O, F).
    """
    z = np.asarray(atomic_numbers, dtype=np.int64).reshape(-1)
    out = np.empty(len(z), dtype=np.int64)
    for k, zk in enumerate(z.tolist()):
        if zk not in AO_COUNTS:
            raise EqtoolError(f"element Z={zk} (atom {k}) is outside the def2-SVP Hamiltonian basis "
                              f"table; supported: {', '.join(_SYMBOL.values())}", "basis")
        out[k] = AO_COUNTS[zk]
    return out


def ao_slices(atomic_numbers: Sequence[int] | np.ndarray) -> list[slice]:
    """Slice of each atom's AOs in the full ``[n_ao]`` axis (PySCF's ``aoslice_by_atom``)."""
    c = ao_counts(atomic_numbers)
    off = np.concatenate([[0], np.cumsum(c)])
    return [slice(int(off[i]), int(off[i + 1])) for i in range(len(c))]


def ao_index(atomic_numbers: Sequence[int] | np.ndarray) -> np.ndarray:
    """For each AO, its row in the padded per-atom axis ``[n * MAX_AO]``: ``atom * MAX_AO + k``.

    Returns:
        ``[n_ao]`` int64.
    """
    c = ao_counts(atomic_numbers)
    return np.concatenate([i * MAX_AO + np.arange(ci) for i, ci in enumerate(c.tolist())]).astype(np.int64)


def _check_blocks(blocks, n: int):
    if tuple(blocks.shape) != (n * n, MAX_AO, MAX_AO):
        raise EqtoolError(f"expected AO blocks of shape [{n * n}, {MAX_AO}, {MAX_AO}] for {n} atoms, "
                          f"got {list(blocks.shape)}", "hamiltonian")


def matrix_from_blocks(blocks, atomic_numbers):
    """Assemble the full AO matrix from pair blocks.

    Args:
        blocks: ``[n*n, 14, 14]`` numpy array or torch tensor, row-major over atom pairs ``(i, j)``.
        atomic_numbers: ``[n]``.

    Returns:
        ``[n_ao, n_ao]`` of the same array type, dtype and device (padding is dropped).
    """
    n = len(atomic_numbers)
    _check_blocks(blocks, n)
    idx = ao_index(np.asarray(atomic_numbers))
    padded = blocks.reshape(n, n, MAX_AO, MAX_AO)
    padded = padded.transpose(1, 2) if _is_torch(padded) else padded.transpose(0, 2, 1, 3)
    padded = padded.reshape(n * MAX_AO, n * MAX_AO)  # [i*14 + a, j*14 + b]
    if _is_torch(padded):
        import torch

        t = torch.as_tensor(idx, device=padded.device)
        return padded.index_select(0, t).index_select(1, t)
    return padded[np.ix_(idx, idx)]


def blocks_from_matrix(matrix, atomic_numbers):
    """Split a full ``[n_ao, n_ao]`` AO matrix into zero-padded pair blocks ``[n*n, 14, 14]``.

    The inverse of :func:`matrix_from_blocks`; works on numpy arrays and torch tensors.
    """
    n = len(atomic_numbers)
    idx = ao_index(np.asarray(atomic_numbers))
    n_ao = len(idx)
    if tuple(matrix.shape) != (n_ao, n_ao):
        raise EqtoolError(f"expected a [{n_ao}, {n_ao}] AO matrix for these {n} atoms (def2-SVP), "
                          f"got {list(matrix.shape)}", "hamiltonian")
    if _is_torch(matrix):
        import torch

        t = torch.as_tensor(idx, device=matrix.device)
        padded = matrix.new_zeros(n * MAX_AO, n * MAX_AO)
        padded[t[:, None], t[None, :]] = matrix
        return padded.reshape(n, MAX_AO, n, MAX_AO).transpose(1, 2).reshape(n * n, MAX_AO, MAX_AO)
    padded = np.zeros((n * MAX_AO, n * MAX_AO), dtype=matrix.dtype)
    padded[np.ix_(idx, idx)] = matrix
    return padded.reshape(n, MAX_AO, n, MAX_AO).transpose(0, 2, 1, 3).reshape(n * n, MAX_AO, MAX_AO)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")
