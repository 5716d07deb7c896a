"""Generate data/cu_emt.h5: Cu structures labelled with ASE's EMT calculator.

Run: ``python data/make_cu_emt.py [--out data/cu_emt.h5] [--seed 0] [--scale 2.5]``

Contents (all 16-108 atoms; energy eV, forces eV/Å, stress eV/Å³ for fully periodic cells only):
  * bulk fcc Cu (2x2x2 conventional = 32, 3x3x3 primitive = 27, 3x3x3 conventional = 108 atoms):
    snapshots of Langevin MD at 300-1500 K, random lattice constant within +-2 %
  * strained bulk cells: volumetric +-4 %, random shear up to 4 %, rattled
  * mono- and di-vacancies in 32- and 108-atom cells (Langevin MD 300-900 K)
  * (111) and (100) slabs (pbc = T, T, F; no stress) with and without an adatom, MD snapshots
  * small clusters (19-79 atoms, non-periodic), rattled and MD snapshots
A fixed train/val/test split (80/10/10, seeded) is written to data/cu_emt.split.json.
Everything is reproducible from --seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.cluster import Octahedron
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

A0 = 3.59  # EMT's Cu lattice constant is ~3.59 Å


def _label(atoms, stress: bool):
    from eqtool.data.graph import AtomGraph

    atoms = atoms.copy()
    atoms.calc = EMT()
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    labels = {"energy": np.asarray(e), "forces": f}
    if stress:
        s = atoms.get_stress(voigt=False)
        labels["stress"] = s
    return AtomGraph(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc, labels=labels)


def _md_snapshots(atoms, temperature, n_snap, every, rng, stress):
    atoms = atoms.copy()
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, 2.0 * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False)
    out = []
    dyn.run(every)  # short equilibration
    for _ in range(n_snap):
        dyn.run(every)
        out.append(_label(atoms, stress))
    return out


def _bulk_cells(rng):
    c = []
    for rep, cubic in (((2, 2, 2), True), ((3, 3, 3), False), ((3, 3, 3), True)):
        a = A0 * (1 + rng.uniform(-0.02, 0.02))
        c.append(bulk("Cu", "fcc", a=a, cubic=cubic) * rep)
    return c


def generate(seed: int = 0, scale: float = 2.5, progress=None):
    rng = np.random.default_rng(seed)
    n = lambda k: max(1, int(round(k * scale)))  # noqa: E731
    graphs = []
    tasks = []
    # 1. bulk MD
    for T in (300, 600, 900, 1200, 1500):
        for atoms in _bulk_cells(rng):
            tasks.append(("bulk", atoms, T, n(30 if len(atoms) < 100 else 12), 10, True))
    # 2. vacancies
    for atoms in (bulk("Cu", "fcc", a=A0, cubic=True) * (2, 2, 2), bulk("Cu", "fcc", a=A0, cubic=True) * 3):
        for nvac in (1, 2):
            for T in (300, 600, 900):
                v = atoms.copy()
                nearest = int(np.argsort(v.get_distances(0, range(len(v)), mic=True))[1])
                idx = [0] if nvac == 1 else [0, nearest]
                del v[idx]
                tasks.append(("vacancy", v, T, n(15 if len(v) < 100 else 6), 10, True))
    # 3. slabs
    for maker, size in ((fcc111, (3, 3, 4)), (fcc100, (3, 3, 4)), (fcc111, (4, 4, 3))):
        for adatom in (False, True):
            s = maker("Cu", size=size, a=A0, vacuum=6.0)
            s.pbc = [True, True, False]
            if adatom:
                top = s.positions[:, 2].max()
                xy = s.cell.array[0, :2] * rng.uniform(0.2, 0.8) + s.cell.array[1, :2] * rng.uniform(0.2, 0.8)
                s.append("Cu")
                s.positions[-1] = [xy[0], xy[1], top + 1.9]
            for T in (300, 700):
                tasks.append(("slab", s, T, n(12), 10, False))
    # 4. clusters
    for length, cutoff in ((4, 1), (5, 2), (5, 1)):
        c = Octahedron("Cu", length, cutoff=cutoff, latticeconstant=A0)
        c.center(vacuum=0.0)
        c.pbc = False
        c.cell = np.zeros((3, 3))
        if not 16 <= len(c) <= 108:
            continue
        for T in (300, 600):
            tasks.append(("cluster", c, T, n(12), 10, False))
    # 5. strained (static, rattled)
    for _ in range(n(300)):
        base = _bulk_cells(rng)[rng.integers(0, 2)]
        vol = rng.uniform(-0.04, 0.04)
        eps = np.eye(3) * ((1 + vol) ** (1 / 3) - 1)
        shear = rng.uniform(-0.04, 0.04, size=3)
        eps[0, 1] = eps[1, 0] = shear[0] / 2
        eps[0, 2] = eps[2, 0] = shear[1] / 2
        eps[1, 2] = eps[2, 1] = shear[2] / 2
        s = base.copy()
        s.set_cell(s.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        s.positions += rng.normal(0, 0.05, size=s.positions.shape)
        tasks.append(("strain", s, None, 1, 0, True))

    total = sum(t[3] for t in tasks)
    done = 0
    for _kind, atoms, T, nsnap, every, stress in tasks:
        if T is None:
            graphs.append(_label(atoms, stress))
        else:
            graphs.extend(_md_snapshots(atoms, T, nsnap, every, rng, stress))
        done += nsnap
        if progress:
            progress(done, total)
    return graphs


def make_split(n: int, seed: int, val=0.1, test=0.1):
    perm = np.random.default_rng(seed + 12345).permutation(n)
    nv, nt = int(round(val * n)), int(round(test * n))
    return {"val": sorted(perm[:nv].tolist()), "test": sorted(perm[nv:nv + nt].tolist()),
            "train": sorted(perm[nv + nt:].tolist()), "seed": seed}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).with_name("cu_emt.h5")))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=2.5, help="multiply the number of snapshots")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from rich.progress import Progress

    from eqtool.io.hdf5 import write_h5

    with Progress() as bar:
        t = bar.add_task("EMT labels", total=None)
        graphs = generate(args.seed, args.scale, lambda d, tot: bar.update(t, completed=d, total=tot))
    write_h5(args.out, graphs, source=f"ASE EMT (data/make_cu_emt.py, seed {args.seed})",
             level_of_theory="EMT")
    split = make_split(len(graphs), args.seed)
    split_path = Path(args.out).with_suffix(".split.json")
    tmp = split_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(split))
    os.replace(tmp, split_path)
    n_atoms = sum(g.n_atoms for g in graphs)
    print(f"wrote {args.out}: {len(graphs)} structures, {n_atoms} atoms; split -> {split_path}")


if __name__ == "__main__":
    main()
