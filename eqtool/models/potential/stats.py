"""Dataset statistics that parameterise an energy model: E0s, avg_num_neighbors, scale and shift.

Every function takes an iterable of collated batches (``dict[str, Tensor]`` from
:func:`eqtool.data.batch.collate`, e.g. a DataLoader) and/or :class:`AtomGraph` objects, so the
trainer can call them on its training loader in one pass each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from eqtool.data import keys as K
from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError

__all__ = ["fit_e0s", "compute_avg_num_neighbors", "compute_scale_shift"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _systems(data: Iterable):
    """Yield per-system ``(atomic_numbers [n], energy or None, forces [n, 3] or None, n_edges or None)``."""
    for item in data:
        if isinstance(item, AtomGraph):
            e = item.labels.get(K.ENERGY)
            yield (item.atomic_numbers, None if e is None else float(e), item.labels.get(K.FORCES),
                   item.n_edges if item.edge_index is not None else None)
            continue
        if not isinstance(item, Mapping):
            raise EqtoolError(f"expected AtomGraph or collated batch dicts, got {type(item).__name__}")
        z = _np(item[K.ATOMIC_NUMBERS]).astype(np.int64)
        if K.BATCH in item:
            b = _np(item[K.BATCH]).astype(np.int64)
            n_sys = len(_np(item[K.N_ATOMS])) if K.N_ATOMS in item else int(b.max()) + 1
        else:
            b, n_sys = np.zeros(len(z), dtype=np.int64), 1
        energy = _np(item[K.ENERGY]).reshape(-1) if K.ENERGY in item else None
        forces = _np(item[K.FORCES]).reshape(-1, 3) if K.FORCES in item else None
        edges = None
        if K.EDGE_INDEX in item:
            recv_sys = b[_np(item[K.EDGE_INDEX])[1].astype(np.int64)]
            edges = np.bincount(recv_sys, minlength=n_sys)
        for s in range(n_sys):
            m = b == s
            yield (z[m], None if energy is None else float(energy[s]),
                   None if forces is None else forces[m], None if edges is None else int(edges[s]))


def fit_e0s(data: Iterable) -> dict[int, float]:
    """Per-element reference energies (eV) by least squares of system energy vs element counts.

    Solves ``E_s ~ sum_Z count_s(Z) * E0(Z)`` (``numpy.linalg.lstsq``, minimum-norm if the
    compositions are degenerate), as MACE's ``compute_average_E0s``.
    """
    counts, energies = [], []
    for z, e, _, _ in _systems(data):
        if e is not None:
            counts.append(np.bincount(z, minlength=119))
            energies.append(e)
    if not energies:
        raise EqtoolError("cannot fit E0s: no system has an 'energy' label")
    a = np.stack(counts).astype(np.float64)
    zs = np.nonzero(a.sum(0))[0]
    sol, *_ = np.linalg.lstsq(a[:, zs], np.asarray(energies), rcond=None)
    return {int(z): float(v) for z, v in zip(zs, sol, strict=False)}


def compute_avg_num_neighbors(data: Iterable) -> float:
    """Mean number of edges per atom (receiver count), over all systems."""
    n_edges = n_atoms = 0
    for z, _, _, ne in _systems(data):
        if ne is None:
            raise EqtoolError("cannot compute avg_num_neighbors: a batch has no 'edge_index' "
                              "(collate with cutoff=...)")
        n_edges += ne
        n_atoms += len(z)
    if n_atoms == 0:
        raise EqtoolError("cannot compute avg_num_neighbors: no atoms")
    return float(n_edges / n_atoms)


def compute_scale_shift(data: Iterable, e0s: Mapping[int, float] | None = None) -> tuple[float, float]:
    """``(scale, shift)`` as MACE's ``rms_forces_scale_shift``.

    ``shift`` = mean over systems of ``(E - sum_i E0[Z_i]) / n_atoms`` (eV); ``scale`` = RMS of all
    force components (eV/Å), falling back to the std of the per-atom residual energies, then 1.
    """
    e0 = {int(k): float(v) for k, v in (e0s or {}).items()}
    resid, sq, n_comp = [], 0.0, 0
    for z, e, f, _ in _systems(data):
        if e is not None:
            missing = sorted(set(z.tolist()) - set(e0)) if e0 else []
            if missing:
                raise EqtoolError(f"no E0 for atomic number(s) {missing}")
            resid.append((e - sum(e0.get(int(v), 0.0) for v in z)) / len(z))
        if f is not None:
            sq += float(np.square(f).sum())
            n_comp += f.size
    if not resid:
        raise EqtoolError("cannot compute scale/shift: no system has an 'energy' label")
    shift = float(np.mean(resid))
    scale = float(np.sqrt(sq / n_comp)) if n_comp else float(np.std(resid))
    if not np.isfinite(scale) or scale <= 1e-12:
        scale = 1.0
    return scale, shift
