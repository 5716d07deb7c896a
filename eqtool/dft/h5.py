"""Write Hamiltonian datasets: the eqtool HDF5 format plus the basis/AO-order root attributes.

Labels of a Hamiltonian system (see ``docs/hamiltonian-data.md``):

=====================  ======  ==============  ===========================================
label                  level   shape           meaning
=====================  ======  ==============  ===========================================
``hamiltonian``        pair    [n², 14, 14]    Fock/KS matrix AO blocks, Hartree
``overlap``            pair    [n², 14, 14]    AO overlap blocks
``energy``             system  []              total energy, eV
``dft_energy_hartree`` system  []              total energy, Hartree
``n_ao``, ``n_occ``    system  [] int          AO count, doubly occupied orbitals
``mo_energy``          system  [max n_ao]      ascending MO energies, Hartree, 0 past n_ao
``homo``, ``lumo``,    system  []              Hartree
``gap``
=====================  ======  ==============  ===========================================
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import h5py
import numpy as np

from eqtool.data.graph import AtomGraph
from eqtool.dft.basis import BASIS, MAX_AO, blocks_from_matrix
from eqtool.dft.metrics import frontier
from eqtool.io.atomic import atomic_path

__all__ = ["AO_ORDER", "LABEL_LEVELS", "LABEL_UNITS", "hamiltonian_graph", "write_hamiltonian_h5"]

AO_ORDER = ("pyscf spherical (cart=False); atoms in order; per atom s shells, then p, then d; "
            "p as x,y,z; d as xy,yz,z2,xz,x2-y2 (m=-2..2)")
LABEL_LEVELS: dict[str, str] = {
    "dft_energy_hartree": "system", "n_ao": "system", "n_occ": "system", "mo_energy": "system",
    "homo": "system", "lumo": "system", "gap": "system", "scf_cycles": "system",
}
LABEL_UNITS: dict[str, str] = {
    "dft_energy_hartree": "Hartree", "mo_energy": "Hartree", "homo": "Hartree", "lumo": "Hartree",
    "gap": "Hartree", "overlap": "1",
}
HARTREE_EV = 27.211386245988  # CODATA 2018, as ase.units.Hartree


def hamiltonian_graph(atomic_numbers, positions, fock, overlap, mo_energy, n_occ: int, mo_pad: int,
                      energy_hartree: float | None = None, extra: Mapping[str, object] | None = None,
                      info: Mapping[str, object] | None = None, source: str | None = None) -> AtomGraph:
    """An :class:`AtomGraph` carrying a system's Hamiltonian labels (full matrices -> blocks).

    Args:
        atomic_numbers: ``[n]``; positions ``[n, 3]`` Å.
        fock, overlap: ``[n_ao, n_ao]`` Hartree / dimensionless, PySCF AO order.
        mo_energy: ``[n_ao]`` ascending, Hartree.
        n_occ: doubly occupied orbitals.
        mo_pad: length ``mo_energy`` is zero-padded to (the file's largest ``n_ao``).
        energy_hartree: total energy (stored as ``energy`` eV and ``dft_energy_hartree``) or None.
        extra: further system labels (e.g. ``scf_cycles``).
    """
    mo = np.asarray(mo_energy, dtype=np.float64)
    n_ao = len(mo)
    padded = np.zeros(mo_pad)
    padded[:n_ao] = mo
    homo, lumo, gap = frontier(mo, n_occ)
    labels = {
        "hamiltonian": blocks_from_matrix(np.asarray(fock, dtype=np.float64), atomic_numbers),
        "overlap": blocks_from_matrix(np.asarray(overlap, dtype=np.float64), atomic_numbers),
        "n_ao": np.asarray(n_ao, dtype=np.int64), "n_occ": np.asarray(n_occ, dtype=np.int64),
        "mo_energy": padded, "homo": np.asarray(homo), "lumo": np.asarray(lumo), "gap": np.asarray(gap),
    }
    if energy_hartree is not None:
        labels["energy"] = np.asarray(energy_hartree * HARTREE_EV)
        labels["dft_energy_hartree"] = np.asarray(energy_hartree)
    for k, v in (extra or {}).items():
        labels[k] = np.asarray(v)
    return AtomGraph(positions, atomic_numbers, labels=labels, info=dict(info or {}), source=source)


def write_hamiltonian_h5(path: str | os.PathLike, graphs: Iterable[AtomGraph], source: str,
                         level_of_theory: str, attrs: Mapping[str, object] | None = None,
                         info_keys: tuple[str, ...] = ()) -> str:
    """Write graphs from :func:`hamiltonian_graph` to an eqtool HDF5 file, atomically.

    Adds root attributes ``basis``, ``ao_order``, ``max_ao``, ``hamiltonian_units`` and any in
    ``attrs``, and a ``unit`` attribute on the Hartree labels. Returns the content hash.
    """
    from eqtool.io.hdf5 import H5Writer

    path = Path(path)
    with atomic_path(path) as tmp:
        with H5Writer(tmp, source=source, level_of_theory=level_of_theory, info_keys=info_keys,
                      levels=LABEL_LEVELS) as w:
            for g in graphs:
                w.append(g)
        digest = w.close()  # already closed by the with block; returns the content hash
        with h5py.File(tmp, "a") as f:
            f.attrs["basis"] = BASIS
            f.attrs["ao_order"] = AO_ORDER
            f.attrs["max_ao"] = MAX_AO
            f.attrs["hamiltonian_units"] = "Hartree"
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            for key, unit in LABEL_UNITS.items():
                for grp in ("pairs", "systems"):
                    if f"{grp}/{key}" in f:
                        f[f"{grp}/{key}"].attrs["unit"] = unit
    return digest
