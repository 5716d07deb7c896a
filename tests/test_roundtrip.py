"""Foundation acceptance: extxyz -> HDF5 -> structures is exact in float64 for a mixed set."""

import numpy as np
from ase.build import bulk, fcc111, molecule
from ase.calculators.emt import EMT

from eqtool.data import AtomGraph
from eqtool.io import read_structures, write_structures
from eqtool.io.hdf5 import read_h5, write_h5


def _mixed_set():
    rng = np.random.default_rng(3)
    frames = []
    a = bulk("Cu", "fcc", a=3.6, cubic=True) * 2
    a.cell = a.cell.array @ (np.eye(3) + rng.normal(0, 0.02, (3, 3)))  # triclinic
    frames.append(a)
    s = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
    s.pbc = [True, True, False]
    frames.append(s)
    m = molecule("CH3CH2OH")
    frames.append(m)
    out = []
    for atoms in frames:
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.get_forces()
        if atoms.pbc.all():
            atoms.get_stress()
        out.append(AtomGraph.from_ase(atoms))
    return out


def test_extxyz_h5_structures_exact(tmp_path):
    graphs = _mixed_set()
    xyz = tmp_path / "mixed.extxyz"
    write_structures(xyz, graphs)
    read = read_structures(xyz)
    h5 = tmp_path / "mixed.h5"
    write_h5(h5, read)
    back = read_h5(h5)
    assert len(back) == len(graphs)
    for g0, g1 in zip(graphs, back, strict=True):
        np.testing.assert_array_equal(g1.atomic_numbers, g0.atomic_numbers)
        np.testing.assert_array_equal(g1.positions, g0.positions)
        np.testing.assert_array_equal(g1.cell, g0.cell)
        np.testing.assert_array_equal(g1.pbc, g0.pbc)
        for key in ("energy", "forces"):
            np.testing.assert_array_equal(g1.labels[key], g0.labels[key])
        if "stress" in g0.labels:
            np.testing.assert_array_equal(g1.labels["stress"], g0.labels["stress"])
        else:  # the molecule: no stress label, and none invented on the way
            assert "stress" not in g1.labels or np.isnan(g1.labels["stress"]).all()
    assert "stress" in graphs[0].labels and "stress" not in graphs[2].labels
