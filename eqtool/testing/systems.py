"""Small reference systems for model checks (ASE builders + EMT labels; no files)."""

from __future__ import annotations

import numpy as np

from eqtool.data.graph import AtomGraph

__all__ = ["example_graphs"]


def example_graphs(seed: int = 0, labels: bool = True) -> list[AtomGraph]:
    """Three small Cu/Au systems covering every boundary condition, rattled off symmetry.

    * ``bulk``: fcc Cu, 4-atom cubic cell (3.61 Å, smaller than usual cutoffs: self-images), pbc xyz
    * ``slab``: Cu(111) 2x2x2 with one Au, 6 Å vacuum, pbc xy only
    * ``cluster``: 13-atom Cu icosahedron with two Au, no pbc

    With ``labels``, energy/forces/stress come from ASE's EMT calculator.
    """
    from ase.build import bulk, fcc111
    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron

    rng = np.random.default_rng(seed)
    systems = []
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a.set_cell(a.cell.array @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), scale_atoms=True)
    systems.append(("bulk", a))
    s = fcc111("Cu", size=(2, 2, 2), vacuum=6.0)
    s.numbers[0] = 79
    systems.append(("slab", s))
    c = Icosahedron("Cu", 2)
    c.numbers[[1, 5]] = 79
    c.center(vacuum=4.0)
    systems.append(("cluster", c))
    graphs = []
    for name, atoms in systems:
        atoms.positions += 0.08 * rng.standard_normal(atoms.positions.shape)
        if labels:
            atoms.calc = EMT()
            atoms.get_potential_energy()
            if atoms.pbc.all():
                atoms.get_stress()
        g = AtomGraph.from_ase(atoms, source=f"example:{name}")
        if not atoms.pbc.all():
            g.labels.pop("stress", None)  # EMT's stress is meaningless without full periodicity
        graphs.append(g)
    return graphs
