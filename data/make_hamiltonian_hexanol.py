"""Generate data/hexanol_svp.h5: B3LYP/def2-SVP Fock matrices of 1-hexanol conformers (21 atoms, 168 AOs).

The >= 18-atom set of the sparse-gate benchmark (``benchmarks/hamiltonian_sparsity.py --molecule
hexanol``), where most atom pairs are far apart: 210 unordered pairs against ethanol's 36.

Run (one core; ~40-50 s per conformer; a rerun with the same ``--work`` skips finished ones)::

    OMP_NUM_THREADS=1 nohup python data/make_hamiltonian_hexanol.py > data/make_hamiltonian_hexanol.log 2>&1 &

Same pipeline as ``data/make_hamiltonian.py`` (whose helpers it uses): a start geometry from SMILES
(RDKit ETKDG + MMFF), GFN2-xTB Langevin MD at 300/400/500/600 K (1 ps equilibration, a snapshot every
``--every`` steps, temperatures interleaved), PySCF RKS B3LYP/def2-SVP single points (grid 3,
conv_tol 1e-10), one ``.npz`` per conformer in ``--work``; then ``--out`` and ``<out>.split.json``
(80/10/10, seeded). ``--partial-every`` rewrites ``--out`` with the finished prefix as it goes.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # one core unless told otherwise (before numpy/pyscf load BLAS)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

NAME, SMILES = "hexanol", "smiles:CCCCCCO"


def main(argv=None) -> None:
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    sys.path.insert(0, str(here.parent))
    import make_hamiltonian as mh
    from rich.console import Console

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=here / "hexanol_svp.h5")
    p.add_argument("-n", type=int, default=60, help="conformers to label (the MD pool is --pool)")
    p.add_argument("--pool", type=int, default=200, help="MD snapshots made (fixed: keeps prefixes stable)")
    mh.add_common_args(p, partial_every=10)
    args = p.parse_args(argv)
    if not 0 < args.n <= args.pool:
        p.error("-n must be in 1..--pool")
    log = Console(stderr=True, highlight=False, width=160).log
    (args.work / "dft").mkdir(parents=True, exist_ok=True)
    mh.MOLECULES[NAME] = SMILES
    confs = {NAME: mh.conformers(NAME, args.pool, args.every, args.seed, args.work, log)}
    counts = {NAME: args.n}
    t_start, seconds = time.time(), []
    for k in range(args.n):
        out = args.work / "dft" / f"{NAME}_{k:04d}.npz"
        if out.exists():
            continue
        r = mh.label(confs[NAME]["numbers"], confs[NAME]["positions"][k], out)
        seconds.append(r["seconds"])
        left = (args.n - k - 1) * sum(seconds) / len(seconds)
        log(f"{k + 1}/{args.n}: E={r['energy']:.6f} Ha, {r['cycles']} cycles, {r['seconds']:.1f} s; "
            f"~{left / 60:.0f} min left")
        if args.partial_every and len(seconds) % args.partial_every == 0 and k < args.n - 1:
            mh.write_dataset(args.out, counts, {NAME: k + 1}, confs, args.work, args.seed, log)
    mh.write_dataset(args.out, counts, dict(counts), confs, args.work, args.seed, log)
    log(f"done in {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
