"""Generate data/water_ethanol_svp.h5: B3LYP/def2-SVP Fock matrices of water and ethanol conformers.

Run (one core is enough; it appends to a work folder, so a rerun skips finished conformers)::

    OMP_NUM_THREADS=1 nohup python data/make_hamiltonian.py > data/make_hamiltonian.log 2>&1 &

Pipeline (everything reproducible from ``--seed``):

1. Conformers: GFN2-xTB Langevin MD (tblite's ASE calculator, 0.5 fs, friction 0.01/fs) of water
   and ethanol, one trajectory per temperature (300, 400, 500, 600 K), 1 ps equilibration, then a
   snapshot every ``--every`` steps (decorrelated; 20 fs by default). Snapshots are interleaved over
   the temperatures, so any prefix covers all four. The MD pool is fixed (water 500, ethanol 300
   snapshots); ``--n-water`` / ``--n-ethanol`` label its first conformers (default 500 / 300:
   ethanol takes ~4 s per conformer on a free core and 3-5x that on a busy shared box).
2. Labels: PySCF RKS B3LYP/def2-SVP (spherical AOs, Å, grid level 3, conv_tol 1e-10; second-order
   SCF if DIIS fails): converged Fock ``mf.get_fock()``, overlap, total energy, MO energies, n_occ.
   One ``.npz`` per conformer in ``--work`` (written atomically).
3. Output: ``--tiny`` (the first 8 water + 4 ethanol conformers, for tests) as soon as those are
   done, then ``--out`` with all conformers (water first, then ethanol) and ``<out>.split.json``
   (per molecule 80/10/10, seeded; ``--split-base-ethanol 200``: val/test drawn from ethanol conformers
   0-199 as in the first release, whose split is ``water_ethanol_svp.split-v1.json``, and conformers
   200-299 all go to train). The remaining conformers run interleaved, and every
   ``--partial-every`` new ones ``--out`` is rewritten with the finished prefix of each molecule
   (root attribute ``complete`` False; its split is the final split restricted to that prefix).
   Format: eqtool HDF5 (docs/hdf5-format.md), labels in
   docs/hamiltonian-data.md.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # one core unless told otherwise (before numpy/pyscf load BLAS)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

MOLECULES = {"water": "H2O", "ethanol": "CH3CH2OH"}  # ase.build.molecule names; "smiles:..." via RDKit/MMFF
# MD snapshots generated per molecule; the first --n-<molecule> of them are labelled
MD_POOL = {"water": 500, "ethanol": 300}
TEMPERATURES = (300.0, 400.0, 500.0, 600.0)
TIMESTEP_FS = 0.5
EQUIL_STEPS = 2000  # 1 ps


def _save_npz(path: Path, **arrays) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def initial_atoms(spec: str, seed: int):
    """Start geometry: an ``ase.build.molecule`` name, or ``smiles:SMILES`` (RDKit ETKDG + MMFF, with H)."""
    from ase import Atoms
    from ase.build import molecule

    if not spec.startswith("smiles:"):
        return molecule(spec)
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(spec[len("smiles:"):]))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    AllChem.MMFFOptimizeMolecule(mol)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    return Atoms(numbers=numbers, positions=mol.GetConformer().GetPositions())


def conformers(name: str, n: int, every: int, seed: int, work: Path, log) -> dict[str, np.ndarray]:
    """``n`` MD snapshots of ``name``: positions ``[n, a, 3]`` Å, numbers ``[a]``, temperature ``[n]`` K."""
    path = work / f"conformers_{name}_n{n}_every{every}_seed{seed}.npz"
    if path.exists():
        d = np.load(path)
        return {k: d[k] for k in d.files}
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from tblite.ase import TBLite

    t0 = time.time()
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    start = initial_atoms(MOLECULES[name], seed)
    n_t = len(TEMPERATURES)
    per_t = [len(range(k, n, n_t)) for k in range(n_t)]
    snaps = []
    for T, count in zip(TEMPERATURES, per_t, strict=True):
        atoms = start.copy()
        atoms.set_constraint(FixCom())
        atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
        MaxwellBoltzmannDistribution(atoms, temperature_K=T, rng=rng)
        Stationary(atoms)
        ZeroRotation(atoms)
        dyn = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=T, friction=0.01 / units.fs,
                       rng=rng, fixcm=False)
        dyn.run(EQUIL_STEPS)
        traj = []
        for _ in range(count):
            dyn.run(every)
            traj.append(atoms.positions.copy())
        snaps.append(traj)
    # interleave temperatures: conformer k comes from temperature k % 4
    order = [(k % n_t, k // n_t) for k in range(n)]
    pos = np.stack([snaps[t][i] for t, i in order])
    temps = np.array([TEMPERATURES[t] for t, _ in order])
    numbers = start.numbers.astype(np.int64)
    _save_npz(path, positions=pos, numbers=numbers, temperature=temps)
    log(f"{name}: {n} conformers from GFN2-xTB MD in {time.time() - t0:.1f} s")
    return {"positions": pos, "numbers": numbers, "temperature": temps}


def label(numbers, positions, out: Path) -> dict:
    """Run B3LYP/def2-SVP on one conformer and store the result as ``out`` (.npz)."""
    from eqtool.dft.pyscf_tools import build_mol, run_rks

    t0 = time.time()
    mol = build_mol(numbers, positions)
    r = run_rks(mol, conv_tol=1e-10)
    if not r.converged:
        raise RuntimeError(f"SCF did not converge for {out.name}")
    res = {"fock": r.fock, "overlap": r.overlap, "energy": r.energy, "mo_energy": r.mo_energy,
           "n_occ": r.n_occ, "cycles": r.cycles, "seconds": time.time() - t0}
    _save_npz(out, **res)
    return res


def _graphs(jobs, confs, work: Path, mo_pad: int):
    from eqtool.dft.h5 import hamiltonian_graph

    for name, k in jobs:
        d = np.load(work / "dft" / f"{name}_{k:04d}.npz")
        c = confs[name]
        yield hamiltonian_graph(
            c["numbers"], c["positions"][k], d["fock"], d["overlap"], d["mo_energy"], int(d["n_occ"]),
            mo_pad, energy_hartree=float(d["energy"]),
            extra={"scf_cycles": int(d["cycles"]), "md_temperature": float(c["temperature"][k])},
            info={"name": name, "conformer": k}, source=f"{name}@{k}")


def write(path: Path, jobs, confs, work: Path, seed: int, log, complete: bool = True) -> None:
    import pyscf

    from eqtool.dft.basis import ao_counts
    from eqtool.dft.h5 import write_hamiltonian_h5

    mo_pad = max(int(ao_counts(confs[name]["numbers"]).sum()) for name, _ in jobs)
    digest = write_hamiltonian_h5(
        path, _graphs(jobs, confs, work, mo_pad),
        source=f"data/make_hamiltonian.py (seed {seed}): GFN2-xTB (tblite) Langevin MD 300-600 K, "
               "PySCF RKS single points",
        level_of_theory=f"B3LYP/def2-SVP (PySCF {pyscf.__version__})",
        attrs={"xc": "b3lyp", "grid_level": 3, "conv_tol": 1e-10, "mo_energy_pad": mo_pad,
               "complete": complete},
        info_keys=("name", "conformer"))
    log(f"wrote {path} ({len(jobs)} systems, {path.stat().st_size / 2**20:.1f} MiB, hash {digest[:12]})")


def make_split(counts: dict[str, int], seed: int, present: dict[str, int] | None = None,
               val=0.1, test=0.1, base: dict[str, int] | None = None) -> dict:
    """Per-molecule 80/10/10 split; indices into the file (molecules concatenated in ``counts`` order).

    The assignment of conformer ``k`` of a molecule depends only on ``counts``, ``base`` and ``seed``;
    with ``present`` (conformers ``0..present[name]-1`` in the file, for a partial file) the split is the
    full one restricted to those conformers, so a partial file never moves a conformer between splits.
    ``base[name]`` (default ``counts[name]``): val and test are drawn from the first ``base`` conformers
    only and every later one goes to train, so labelling more conformers of a molecule keeps the
    held-out conformers of the smaller file where they were.
    """
    present = present or counts
    base = {name: min(n, (base or {}).get(name, n)) for name, n in counts.items()}
    out = {"train": [], "val": [], "test": [], "seed": seed, "by_molecule": {}}
    start = 0
    for m, (name, n) in enumerate(counts.items()):
        b = base[name]
        perm = np.random.default_rng([seed, 777, m]).permutation(b)
        nv, nt = int(round(val * b)), int(round(test * b))
        train = np.concatenate([perm[nv + nt:], np.arange(b, n)])
        parts = {"val": perm[:nv], "test": perm[nv:nv + nt], "train": train}
        have = int(present.get(name, 0))
        out["by_molecule"][name] = {"first": start, "count": have}
        for key, idx in parts.items():
            out[key].extend((start + idx[idx < have]).tolist())
        start += have
    for key in ("train", "val", "test"):
        out[key] = sorted(out[key])
    return out


def _prefix(work: Path, name: str, n: int) -> int:
    """Number of conformers ``0..p-1`` of ``name`` already labelled."""
    p = 0
    while p < n and (work / "dft" / f"{name}_{p:04d}.npz").exists():
        p += 1
    return p


def write_dataset(out: Path, counts: dict[str, int], present: dict[str, int], confs, work: Path,
                  seed: int, log, base: dict[str, int] | None = None) -> None:
    """Write ``out`` and ``<out>.split.json`` for the first ``present[name]`` conformers of each molecule."""
    jobs = [(name, k) for name in counts for k in range(present[name])]
    complete = present == counts
    write(out, jobs, confs, work, seed, log, complete=complete)
    split_path = out.with_suffix(".split.json")
    tmp = split_path.with_name(f".{split_path.name}.tmp")
    tmp.write_text(json.dumps(make_split(counts, seed, present, base=base)))
    os.replace(tmp, split_path)
    log(f"wrote {split_path} ({'complete' if complete else 'partial: ' + str(present)})")


def add_common_args(p: argparse.ArgumentParser, partial_every: int) -> None:
    """MD spacing, seed, work folder and partial-output interval (shared with make_hamiltonian_hexanol.py)."""
    p.add_argument("--every", type=int, default=40, help="MD steps (0.5 fs) between snapshots")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "eqtool-make-hamiltonian",
                   help="folder for per-conformer results (resume: rerun with the same folder)")
    p.add_argument("--partial-every", type=int, default=partial_every,
                   help="rewrite --out (attribute complete=False) after this many new conformers; 0: never")


def main(argv=None) -> None:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=here / "water_ethanol_svp.h5")
    p.add_argument("--tiny", type=Path, default=here / "hamiltonian_tiny.h5")
    p.add_argument("--n-water", type=int, default=500)
    p.add_argument("--n-ethanol", type=int, default=300)
    p.add_argument("--split-base-ethanol", type=int, default=200,
                   help="val/test are drawn from the first N ethanol conformers; later ones go to train")
    p.add_argument("--tiny-water", type=int, default=8)
    p.add_argument("--tiny-ethanol", type=int, default=4)
    add_common_args(p, partial_every=30)
    args = p.parse_args(argv)
    sys.path.insert(0, str(here.parent))
    from rich.console import Console

    console = Console(stderr=True, highlight=False, width=160)
    log = console.log
    (args.work / "dft").mkdir(parents=True, exist_ok=True)
    counts = {"water": args.n_water, "ethanol": args.n_ethanol}
    base = {"ethanol": args.split_base_ethanol}
    for name, n in counts.items():
        if not 0 < n <= MD_POOL[name]:
            p.error(f"--n-{name} must be in 1..{MD_POOL[name]} (the MD pool)")
    confs = {name: conformers(name, MD_POOL[name], args.every, args.seed, args.work, log) for name in counts}
    tiny = [("water", k) for k in range(args.tiny_water)] + [("ethanol", k) for k in range(args.tiny_ethanol)]
    # the rest interleaved by progress fraction, so partial outputs hold both molecules
    rest = sorted(((name, k) for name, n in counts.items() for k in range(n) if (name, k) not in set(tiny)),
                  key=lambda j: ((j[1] + 1) / counts[j[0]], j[0]))
    todo = tiny + rest
    t_start, done_now, seconds = time.time(), 0, {"water": [], "ethanol": []}
    for i, (name, k) in enumerate(todo):
        out = args.work / "dft" / f"{name}_{k:04d}.npz"
        if not out.exists():
            r = label(confs[name]["numbers"], confs[name]["positions"][k], out)
            done_now += 1
            seconds[name].append(r["seconds"])
            if done_now % 10 == 1 or i == len(todo) - 1:
                mean = {m: float(np.mean(v)) if v else 0.0 for m, v in seconds.items()}
                left = sum(mean[m] for m, _ in todo[i + 1:])  # upper bound: some may be done already
                log(f"{i + 1}/{len(todo)} {name} #{k}: E={r['energy']:.6f} Ha, {r['cycles']} cycles, "
                    f"{r['seconds']:.2f} s; elapsed {time.time() - t_start:.0f} s, ~{left / 60:.1f} min left")
            if args.partial_every and done_now % args.partial_every == 0 and i < len(todo) - 1:
                present = {m: _prefix(args.work, m, n) for m, n in counts.items()}
                write_dataset(args.out, counts, present, confs, args.work, args.seed, log, base=base)
        if i == len(tiny) - 1 and (done_now or not args.tiny.exists()):
            write(args.tiny, tiny, confs, args.work, args.seed, log)
    for name in counts:
        if seconds[name]:
            log(f"{name}: {np.mean(seconds[name]):.2f} s per conformer (mean of {len(seconds[name])})")
    write_dataset(args.out, counts, dict(counts), confs, args.work, args.seed, log, base=base)
    log(f"done in {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
