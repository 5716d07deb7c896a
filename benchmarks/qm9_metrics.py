"""EDM's molecule metrics on QM9's own DFT geometries: the "Data" row of EDM's Table 2.

Run (after ``python data/make_qm9.py``, which writes data/qm9.h5 and data/qm9.split.json)::

    python benchmarks/qm9_metrics.py [--data data/qm9.h5] [--limit N]

Prints atom and molecule stability, RDKit validity and uniqueness for all of QM9 and for each EDM
split, the novelty of the test molecules against the SMILES perceived from the training geometries
(as EDM derives its reference SMILES), and checks the acceptance band: atom stability 99.0 % and
molecule stability 95.2 % (EDM, Hoogeboom et al. 2022) within +-0.5 points. Exit code 1 if outside.
Takes a few minutes on one CPU core (bond perception + RDKit for 130,831 molecules).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = {"atom_stability": 99.0, "molecule_stability": 95.2, "validity": 97.7, "valid_unique": 97.7}
BAND = 0.5  # percentage points


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT / "data" / "qm9.h5"))
    p.add_argument("--limit", type=int, default=None, help="only the first N molecules (quick look)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from eqtool.chem import analyze_molecule, summarize
    from eqtool.io.hdf5 import H5Dataset

    data = Path(args.data)
    if not data.is_file():
        print(f"error: {data}: not found; build it with `python data/make_qm9.py`", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    with H5Dataset(data) as ds:
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        reports = [analyze_molecule(ds[i]) for i in range(n)]
    t1 = time.perf_counter()
    split_path = data.with_suffix(".split.json")
    split = json.loads(split_path.read_text()) if split_path.is_file() else {}
    groups = {"all": list(range(n))}
    for name in ("train", "val", "test"):
        if name in split:
            groups[name] = [i for i in split[name] if i < n]

    def pct(x):
        return "-" if x is None else f"{100 * x:6.2f}"

    print(f"QM9 metrics on DFT geometries ({data}, {n} molecules, {t1 - t0:.0f} s, "
          f"{1e3 * (t1 - t0) / max(n, 1):.2f} ms/molecule)")
    head = ("set", "mols", "atom%", "mol%", "valid%", "uniq%", "V&U%", "novel%")
    print(f"{head[0]:>6} " + " ".join(f"{h:>7}" for h in head[1:]))
    results = {}
    for name, idx in groups.items():
        sub = [reports[i] for i in idx]
        train = None
        if name == "test" and "train" in groups:
            train = [reports[i].smiles for i in groups["train"] if reports[i].smiles is not None]
        m = summarize(sub, train)
        results[name] = m
        print(f"{name:>6} {m['n_molecules']:>7} {pct(m['atom_stability'])} {pct(m['molecule_stability'])} "
              f"{pct(m['validity'])} {pct(m['uniqueness'])} {pct(m['valid_unique'])} {pct(m['novelty'])}")
    print(f"{'EDM':>6} {'':>7} {PUBLISHED['atom_stability']:6.2f} {PUBLISHED['molecule_stability']:6.2f} "
          f"{PUBLISHED['validity']:6.2f} {'':>7} {PUBLISHED['valid_unique']:6.2f}   (published 'Data' row)")
    ok = True
    for key in ("atom_stability", "molecule_stability"):
        got = 100 * results["all"][key]
        inside = abs(got - PUBLISHED[key]) <= BAND
        ok &= inside
        print(f"{key}: {got:.2f} % vs published {PUBLISHED[key]:.1f} % +- {BAND} -> "
              f"{'PASS' if inside else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
