"""Write data/examples/cu_small.extxyz: 12 small Cu structures with ASE EMT labels.

Mixed periodic (bulk, with stress), slab (pbc T,T,F) and cluster (non-periodic) systems; used by the
Quickstart and the tests. Run: ``python data/make_examples.py``.
"""

from pathlib import Path

import numpy as np
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.cluster import Octahedron
from ase.io import write


def main():
    rng = np.random.default_rng(7)
    frames = []
    for i in range(6):
        a = bulk("Cu", "fcc", a=3.59 * (1 + 0.01 * (i - 3)), cubic=True) * (2, 2, 2)
        a.positions += rng.normal(0, 0.08, a.positions.shape)
        frames.append(a)
    for _ in range(3):
        s = fcc111("Cu", size=(2, 2, 4), a=3.59, vacuum=6.0)
        s.pbc = [True, True, False]
        s.positions += rng.normal(0, 0.05, s.positions.shape)
        frames.append(s)
    for _ in range(3):
        c = Octahedron("Cu", 4, cutoff=1, latticeconstant=3.59)
        c.cell = np.zeros((3, 3))
        c.pbc = False
        c.positions += rng.normal(0, 0.05, c.positions.shape)
        frames.append(c)
    for a in frames:
        a.calc = EMT()
        a.get_potential_energy()
        a.get_forces()
        if a.pbc.all():
            a.get_stress()
    out = Path(__file__).with_name("examples") / "cu_small.extxyz"
    write(out, frames, format="extxyz")
    print(f"wrote {out}: {len(frames)} frames")
    # unlabelled starting structures for the Quickstart: a vacancy to relax, a bulk cell for MD
    vac = bulk("Cu", "fcc", a=3.59, cubic=True) * (2, 2, 2)
    del vac[0]
    vac.positions += rng.normal(0, 0.05, vac.positions.shape)  # so the relaxation has work to do
    write(out.with_name("cu_vacancy.extxyz"), vac, format="extxyz")
    write(out.with_name("cu_bulk.extxyz"), bulk("Cu", "fcc", a=3.59, cubic=True) * (2, 2, 2), format="extxyz")
    print("wrote cu_vacancy.extxyz (31 atoms), cu_bulk.extxyz (32 atoms)")


if __name__ == "__main__":
    main()
