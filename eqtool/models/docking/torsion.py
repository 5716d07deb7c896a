"""Fit a ligand conformer's torsions to predicted coordinates (numpy, RDKit graph only).

Only rigid motions and rotations of one side of a rotatable bond about that bond are applied, so
bond lengths and bond angles stay exactly those of the input conformer (EquiBind sec. 3.3 fits the
same degrees of freedom). Rotatable bonds are RDKit's ``Lipinski`` definition (single, acyclic,
neither end terminal nor in a triple bond); torsions that move hydrogens only are skipped.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rotatable_torsions", "kabsch_np", "align", "fit_torsions", "rmsd_after_alignment", "dihedral"]

ROTATABLE_SMARTS = "[!$(*#*)&!D1]-&!@[!$(*#*)&!D1]"


def rotatable_torsions(mol, heavy: np.ndarray) -> list[tuple[int, int, np.ndarray, int, int]]:
    """``(j, k, moving, i, l)`` per rotatable bond: the smaller side ``moving`` (atom indices,
    containing ``k``) turns about the axis ``j -> k``; ``i-j-k-l`` is a dihedral through it (heavy
    neighbours where possible). Bonds whose smaller side has no heavy atom are left out."""
    from rdkit import Chem

    heavy_set = {int(i) for i in heavy}
    neighbours = [[n.GetIdx() for n in a.GetNeighbors()] for a in mol.GetAtoms()]
    out = []
    for j, k in mol.GetSubstructMatches(Chem.MolFromSmarts(ROTATABLE_SMARTS)):
        side, stack = {k}, [k]
        while stack:  # atoms reachable from k without crossing the bond j-k
            a = stack.pop()
            for n in neighbours[a]:
                if n not in side and not (a == k and n == j):
                    side.add(n)
                    stack.append(n)
        if j in side:  # ring bond after all
            continue
        if len(side) > mol.GetNumAtoms() - len(side):
            j, k = k, j
            side = set(range(mol.GetNumAtoms())) - side
        if side & heavy_set and len(side & heavy_set) < len(heavy_set) - 1:
            i = min((n for n in neighbours[j] if n != k), key=lambda n: (n not in heavy_set, n))
            m = min((n for n in neighbours[k] if n != j), key=lambda n: (n not in heavy_set, n))
            out.append((int(j), int(k), np.array(sorted(side), dtype=np.int64), int(i), int(m)))
    return out


def kabsch_np(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations ``[..., 3, 3]`` and translations ``[..., 3]`` taking points ``p`` [..., n, 3] onto ``q``."""
    pc, qc = p.mean(-2, keepdims=True), q.mean(-2, keepdims=True)
    cov = np.swapaxes(p - pc, -1, -2) @ (q - qc)
    u, _, vh = np.linalg.svd(cov)
    v, ut = np.swapaxes(vh, -1, -2), np.swapaxes(u, -1, -2)
    d = np.sign(np.linalg.det(v @ ut))
    diag = np.ones(cov.shape[:-1])
    diag[..., 2] = d
    rot = v @ (diag[..., :, None] * ut)
    trans = qc[..., 0, :] - (rot @ pc[..., 0, :, None])[..., 0]
    return rot, trans


def rmsd_after_alignment(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """RMSD ``[...]`` (Å) between ``p`` ``[..., n, 3]`` and ``q`` after optimal superposition."""
    rot, trans = kabsch_np(p, q)
    moved = p @ np.swapaxes(rot, -1, -2) + trans[..., None, :]
    return np.sqrt(((moved - q) ** 2).sum(-1).mean(-1))


def align(pos: np.ndarray, heavy: np.ndarray, target: np.ndarray) -> np.ndarray:
    """All atoms ``pos`` [N, 3] moved rigidly so that ``pos[heavy]`` best fits ``target`` [Nh, 3]."""
    rot, trans = kabsch_np(pos[heavy], target)
    return pos @ rot.T + trans


def _rotate(pos: np.ndarray, j: int, k: int, moving: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Copies ``[A, N, 3]`` of ``pos`` with ``moving`` turned by ``angles`` [A] (rad) about ``j -> k``."""
    axis = pos[k] - pos[j]
    axis = axis / np.linalg.norm(axis)
    c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = c * np.eye(3) + s * kx + (1 - c) * np.outer(axis, axis)  # [A, 3, 3] Rodrigues
    out = np.repeat(pos[None], len(angles), axis=0)
    out[:, moving] = (pos[moving] - pos[k]) @ np.swapaxes(rot, -1, -2) + pos[k]
    return out


def dihedral(p: np.ndarray) -> float:
    """Dihedral angle (rad) of four points ``p`` [4, 3]."""
    b0, b1, b2 = p[0] - p[1], p[2] - p[1], p[3] - p[2]
    b1 = b1 / np.linalg.norm(b1)
    v, w = b0 - np.dot(b0, b1) * b1, b2 - np.dot(b2, b1) * b1
    return float(np.arctan2(np.dot(np.cross(b1, v), w), np.dot(v, w)))


def _match_dihedrals(pos, heavy, target, torsions):
    """Set each torsion's dihedral ``i-j-k-l`` to that of ``target`` where all four are heavy atoms."""
    where = {int(a): n for n, a in enumerate(heavy)}
    for j, k, moving, i, m in torsions:
        if not all(a in where for a in (i, j, k, m)):
            continue
        want = dihedral(target[[where[i], where[j], where[k], where[m]]])
        delta = want - dihedral(pos[[i, j, k, m]])
        cand = _rotate(pos, j, k, moving, np.array([delta, -delta]))
        pos = min(cand, key=lambda c: abs(np.angle(np.exp(1j * (dihedral(c[[i, j, k, m]]) - want)))))
    return pos


def _descend(pos, heavy, target, torsions, sweeps, n_angles):
    coarse = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    fine = np.deg2rad(np.arange(-5.0, 5.5, 1.0))
    for _ in range(sweeps):
        for j, k, moving, *_ in torsions:
            for grid in (coarse, fine):
                cand = _rotate(pos, j, k, moving, grid)  # [A, N, 3]
                best = int(np.argmin(rmsd_after_alignment(cand[:, heavy], target[None])))
                pos = cand[best]
    return pos


def fit_torsions(pos: np.ndarray, heavy: np.ndarray, target: np.ndarray, torsions: list[tuple],
                 sweeps: int = 2, n_angles: int = 36) -> tuple[np.ndarray, float]:
    """Turn the torsions of conformer ``pos`` [N, 3] (Å) so its heavy atoms fit ``target`` [Nh, 3].

    Two starts, the better kept: the conformer as given, and the conformer with every dihedral set
    to the target's. From each, coordinate descent: each torsion in turn takes the best of
    ``n_angles`` evenly spaced angles, then of a 1-degree-step local refinement, scored by the
    heavy-atom RMSD after optimal superposition; ``sweeps`` passes. The result is superposed on
    ``target``.

    Returns:
        ``(positions [N, 3] Å, heavy-atom RMSD to target in Å)``.
    """
    pos = np.asarray(pos, dtype=np.float64).copy()
    target = np.asarray(target, dtype=np.float64)
    best, best_rmsd = pos, np.inf
    for start in (pos, _match_dihedrals(pos, heavy, target, torsions)):
        fitted = align(_descend(start, heavy, target, torsions, sweeps, n_angles), heavy, target)
        rmsd = float(np.sqrt(((fitted[heavy] - target) ** 2).sum(-1).mean()))
        if rmsd < best_rmsd:
            best, best_rmsd = fitted, rmsd
    return best, best_rmsd
