"""NVE energy drift of an eqtool potential: 108 Cu atoms, 1 fs, 2 ps at ~300 K, float64.

Run: ``python benchmarks/nve_drift.py [--model cu-emt] [--steps 2000] [--device cpu] [--out drift.json]``

Velocities are drawn at 2 x 300 K on the perfect fcc lattice (3x3x3 conventional cells at the
potential's relaxed lattice constant); equipartition brings the system to ~300 K within ~0.1 ps.
The drift is the slope of a least-squares line through the total energy per atom against time
(meV/atom/ps); the acceptance bound for eqtool is 0.1 meV/atom/ps. ASE's EMT, the reference the
cu-emt potential was trained on, runs through the same code for comparison (``--reference``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def measure(calc, n_rep: int, steps: int, timestep_fs: float, temperature_k: float, seed: int) -> dict:
    from ase.build import bulk

    from eqtool.sim.md import MDConfig, run_md
    from eqtool.sim.relax import relax

    prim = relax(bulk("Cu", "fcc", a=3.6), calc, fmax=1e-4, steps=200, optimizer="bfgs", cell=True).atoms
    a = float(np.mean(prim.cell.lengths())) * np.sqrt(2)
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((n_rep, n_rep, n_rep))
    cfg = MDConfig(ensemble="nve", temperature_k=2 * temperature_k, timestep_fs=timestep_fs, steps=steps,
                   interval=10, seed=seed)
    t0 = time.perf_counter()
    res = run_md(atoms, calc, cfg)
    wall = time.perf_counter() - t0
    if res.stopped:
        raise SystemExit(f"NVE run stopped early: {res.stopped}")
    n = len(atoms)
    t = np.array([r["time_ps"] for r in res.records])
    etot = np.array([r["etot_eV"] for r in res.records]) / n
    temp = np.array([r["temperature_K"] for r in res.records])
    slope = np.polyfit(t, etot, 1)[0]
    return {
        "atoms": n, "lattice_constant_A": a, "timestep_fs": timestep_fs, "steps": steps,
        "time_ps": float(t[-1]), "mean_temperature_K": float(temp[len(temp) // 10:].mean()),
        "drift_meV_per_atom_per_ps": float(slope * 1e3),
        "max_abs_etot_deviation_meV_per_atom": float(np.abs(etot - etot[0]).max() * 1e3),
        "etot_std_meV_per_atom": float(etot.std() * 1e3), "wall_s": wall,
        "ns_per_day": steps * timestep_fs * 1e-6 / wall * 86400,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cu-emt", help="model file or shipped name")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="target K (velocities at 2x)")
    parser.add_argument("--size", type=int, default=3, help="cubic cells per direction (3: 108 atoms)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--reference", action="store_true", help="also run ASE's EMT")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    import torch

    from eqtool.calculator import EqCalculator

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = {}
    calc = EqCalculator(args.model, device=args.device, dtype=args.dtype)
    rows[f"eqtool {args.model} ({args.dtype}, {args.device})"] = measure(
        calc, args.size, args.steps, args.timestep, args.temperature, args.seed)
    if args.reference:
        from ase.calculators.emt import EMT

        rows["ASE EMT (reference)"] = measure(EMT(), args.size, args.steps, args.timestep, args.temperature,
                                              args.seed)
    print(f"{'potential':40s} {'atoms':>5s} {'ps':>5s} {'T (K)':>7s} {'drift meV/atom/ps':>18s} "
          f"{'max|dE| meV/atom':>17s} {'ns/day':>8s}")
    for name, r in rows.items():
        print(f"{name:40s} {r['atoms']:5d} {r['time_ps']:5.2f} {r['mean_temperature_K']:7.1f} "
              f"{r['drift_meV_per_atom_per_ps']:18.4f} {r['max_abs_etot_deviation_meV_per_atom']:17.4f} "
              f"{r['ns_per_day']:8.3f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    ok = all(abs(r["drift_meV_per_atom_per_ps"]) <= 0.1 for name, r in rows.items() if "eqtool" in name)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
