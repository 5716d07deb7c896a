"""Cheap physics baselines for Hamiltonian models (Δ-learning: the model predicts ``F - F0``).

``"promolecule"``: the Fock-like matrix of the superposed free-atom density (PySCF's ``minao``
guess ``D0``, built from spherically averaged atoms, so rotations act on it as on the molecule),

    ``F0 = T + V_nuc + J[D0] - EXCHANGE * K[D0]``   (Hartree, PySCF AO order),

one- and two-electron integrals only, no DFT grid (timings in docs/hamiltonian.md). It carries what an
equivariant network finds hardest to learn to µHa precision: the exact geometry dependence of the
kinetic, nuclear-attraction and Coulomb integrals between AOs. ``EXCHANGE = 0.25`` (half of
Hartree-Fock exchange, which is ``0.5 K`` for a closed shell) gave the smallest ``|F - F0|`` on
the B3LYP/def2-SVP water/ethanol data (10 test conformers each, mean |F - F0| in mHa; the raw
|F| is 270 / 103): exchange weight 0 → 89 / 39, 0.1 → 62 / 26, 0.2 → 36 / 15, 0.25 → 26 / 14,
0.3 → 25 / 15, 0.5 → 61 / 34. The output scale a model fits on the residual is ten times smaller
(water + ethanol: 0.019 Ha against 0.205 Ha without the baseline).

Needs PySCF (the ``dft`` extra).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from eqtool.data import keys as K
from eqtool.errors import EqtoolError

__all__ = ["BASELINES", "EXCHANGE", "check_baseline", "baseline_fock", "with_baseline"]

BASELINES = ("promolecule",)
EXCHANGE = 0.25


def check_baseline(name) -> str | None:
    """``name`` if it is a known baseline (``None`` and ``"none"`` mean none), else :class:`EqtoolError`."""
    if name is None or (isinstance(name, str) and name.lower() == "none"):
        return None
    if not isinstance(name, str) or name.lower() not in BASELINES:
        raise EqtoolError(f"unknown Hamiltonian baseline {name!r}; choose one of: none, "
                          + ", ".join(BASELINES), source="model")
    return name.lower()


def baseline_fock(atomic_numbers, positions_angstrom, name: str = "promolecule",
                  basis: str = "def2-svp") -> np.ndarray:
    """``F0 [n_ao, n_ao]`` (Hartree, PySCF AO order) of one neutral closed-shell molecule."""
    from eqtool.dft.pyscf_tools import build_mol

    check_baseline(name)
    mol = build_mol(atomic_numbers, positions_angstrom, basis=basis)  # raises if PySCF is missing
    from pyscf.scf import hf

    dm = hf.init_guess_by_minao(mol)
    vj, vk = hf.get_jk(mol, dm, hermi=1)
    return hf.get_hcore(mol) + vj - EXCHANGE * vk


def with_baseline(graphs: Sequence, name: str, basis: str = "def2-svp") -> list:
    """``graphs`` with the pair-level label ``hamiltonian_baseline`` (``[n^2, 14, 14]``, Hartree) set;
    graphs that carry it already are returned as they are."""
    from eqtool.dft.basis import blocks_from_matrix

    out = []
    for g in graphs:
        if K.HAMILTONIAN_BASELINE not in g.labels:
            try:
                F0 = baseline_fock(g.atomic_numbers, g.positions, name, basis)
            except EqtoolError as exc:
                raise EqtoolError(f"baseline '{name}': {exc.message}", g.source or exc.source) from None
            labels = {**g.labels, K.HAMILTONIAN_BASELINE: blocks_from_matrix(F0, g.atomic_numbers)}
            g = dataclasses.replace(g, labels=labels)
        out.append(g)
    return out
