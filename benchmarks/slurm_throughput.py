"""Throughput of `eqtool relax` as SLURM array jobs (1, 2, 4 tasks) beside one process.

Needs a running SLURM (e.g. ``tests/cluster/slurm_local.sh up``). Run from the repository root:

    python benchmarks/slurm_throughput.py [--structures 64] [--steps 20] [--tasks 1 2 4]

Prints structures/s for one plain process and for array jobs of 1, 2 and 4 tasks (wall time from
submission until the last task ends, merge excluded), the speed-up, and the overheads that array
tasks pay: SLURM's scheduling/launch time per task (an array of empty tasks) and eqtool's start-up
per process (imports + model load, a relax of one structure with 0 steps). With C CPUs, at most C
one-CPU tasks run at once, so on a 2-core machine 4 tasks cannot beat 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _eqtool(*args, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "eqtool.cli.main", *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True)
    if proc.returncode not in (0, 3):  # 3: some structures not converged, fine for timing
        sys.exit(f"eqtool {' '.join(map(str, args[:2]))} failed: {proc.stderr.strip()[-500:]}")
    return proc


def _wait(job: str, n: int) -> None:
    while True:
        out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
        states = re.findall(r"\bJobState=(\S+)", out)
        if len(states) == n and set(states) <= FINAL:
            return
        time.sleep(0.1)


def _write_inputs(path: Path, n: int) -> int:
    import ase.io
    from ase.build import bulk

    sizes = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]
    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * sizes[k % len(sizes)]
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    ase.io.write(path, frames)
    return sum(len(a) for a in frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structures", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="optimiser steps per structure (fmax unreachable)")
    ap.add_argument("--tasks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    if subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        sys.exit("error: sinfo: no SLURM answering; start one with tests/cluster/slurm_local.sh up")
    cpus = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="eqtool-slurm-bench-"))
    atoms = _write_inputs(work / "in.extxyz", args.structures)
    relax = ["relax", "in.extxyz", "--model", "cu-emt", "--fmax", "1e-9", "--steps", args.steps,
             "--threads", 1]
    rows = []

    t0 = time.perf_counter()
    _eqtool(*relax, "--out", "single.extxyz", cwd=work)
    single = time.perf_counter() - t0
    rows.append({"run": "single process", "tasks": 1, "wall_s": single})
    for n in args.tasks:
        folder = work / f"array{n}"
        folder.mkdir()
        (folder / "in.extxyz").write_bytes((work / "in.extxyz").read_bytes())
        t0 = time.perf_counter()
        sub = _eqtool("sbatch", "--array", n, "--", *relax, "--out", "r.extxyz", cwd=folder)
        job = re.search(r"submitted job (\d+)", sub.stdout).group(1)
        _wait(job, n)
        rows.append({"run": f"array of {n}", "tasks": n, "wall_s": time.perf_counter() - t0})

    empty = {}
    for n in (1, 4):
        t0 = time.perf_counter()
        job = subprocess.run(["sbatch", "--parsable", f"--array=0-{n - 1}", "--output=/dev/null",
                              "--wrap", "true"], capture_output=True, text=True, cwd=work).stdout.strip()
        _wait(job, n)
        empty[n] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _eqtool("relax", "one.extxyz", "--model", "cu-emt", "--steps", 0, "--out", "one_out.extxyz",
            cwd=_one_structure(work))
    startup = time.perf_counter() - t0

    print(f"# eqtool relax, {args.structures} Cu structures ({atoms} atoms, 4-32 per cell), {args.steps} "
          f"FIRE steps each, cu-emt float64, 1 thread per process; SLURM CPUs alloc/idle/other/total {cpus}")
    print(f"{'run':<16} {'wall s':>8} {'structures/s':>13} {'speed-up':>9}")
    for r in rows:
        r["structures_per_s"] = args.structures / r["wall_s"]
        r["speedup"] = single / r["wall_s"]
        print(f"{r['run']:<16} {r['wall_s']:>8.2f} {r['structures_per_s']:>13.2f} {r['speedup']:>9.2f}")
    print(f"scheduling overhead per task (empty array tasks): 1 task {empty[1]:.2f} s, "
          f"4 tasks {empty[4] / 4:.2f} s each ({empty[4]:.2f} s in all)")
    print(f"eqtool start-up per process (imports, model, one structure, 0 steps): {startup:.2f} s")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "empty_array_s": empty, "startup_s": startup,
                                         "structures": args.structures, "steps": args.steps}, indent=1))


def _one_structure(work: Path) -> Path:
    import ase.io

    folder = work / "one"
    folder.mkdir(exist_ok=True)
    ase.io.write(folder / "one.extxyz", ase.io.read(work / "in.extxyz", 0))
    return folder


if __name__ == "__main__":
    main()
