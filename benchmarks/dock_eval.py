"""Redock every complex of data/docking with vina, model and model+vina; print them side by side.

For each complex: the crystal ligand's graph gets a fresh RDKit conformer (ETKDGv3 + MMFF) in a random
orientation at a random offset (2 Å) from the pocket centre; the box is the crystal ligand's bounding
box + 4 Å per side (``--box-from``); the receptor is prepared with ``keep_hetero`` (cofactors and
other ligands without a meeko template stay as element-typed heavy atoms) and ``drop_unmatched``
(residues with distorted atoms are dropped; listed in the JSON). Reported per method:

- top-1 symmetry-corrected heavy-atom RMSD to the crystal ligand (Å) and the < 2 Å success rate;
- PoseBusters validity of the top-1 pose (``posebusters``, ``dock`` config: chemistry, geometry and
  protein clashes; the RMSD check is the separate column);
- wall time and CPU time (this process, all threads) per complex: ligand preparation + docking,
  Vina map computation included (each method run docks one ligand, as a user with one ligand would);
  receptor preparation is shared and reported separately. On a shared machine the CPU time is the
  steadier figure.

Run: ``python benchmarks/dock_eval.py [--exhaustiveness 8] [--cpu 1] [--model dock-demo] [--json out.json]``.
Without a loadable model only ``vina`` runs (and the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "docking"


def _pb_valid(pose, protein: Path) -> tuple[bool, str]:
    from posebusters import PoseBusters

    df = PoseBusters(config="dock").bust(mol_pred=[pose], mol_cond=str(protein), full_report=False)
    checks = df.select_dtypes(include=bool).iloc[0]
    failed = [k for k, v in checks.items() if not v]
    return (not failed), ",".join(failed)


def _ligand(ref, box, seed: int):
    from eqtool.dock import Ligand, prepare_ligand, random_pose

    rng = np.random.default_rng(seed)
    mol, err = prepare_ligand(ref, seed=seed, new_conformer=True)
    if err:
        return Ligand(ref.GetProp("_Name"), 1, "crystal graph", None, err)
    offset = rng.normal(size=3)
    mol = random_pose(mol, np.asarray(box.center) + 2.0 * offset / np.linalg.norm(offset), rng)
    return Ligand(ref.GetProp("_Name"), 1, "crystal graph, RDKit conformer, random pose", mol)


def run_complex(name: str, methods, model, args) -> dict:
    from rdkit import Chem

    from eqtool.dock import box_from_ligand_file, dock_ligands, prepare_receptor, symmetry_rmsd

    folder = DATA / name
    protein, ligand_sdf = folder / f"{name}_protein.pdb", folder / f"{name}_ligand.sdf"
    ref = Chem.MolFromMolFile(str(ligand_sdf))
    t0 = time.perf_counter()
    receptor = prepare_receptor(protein, drop_unmatched=True, keep_hetero=True)
    prep = time.perf_counter() - t0
    box = box_from_ligand_file(ligand_sdf)
    row = {"receptor_s": prep, "removed": list(receptor.removed), "kept_hetero": list(receptor.kept_hetero),
           "heavy_atoms": ref.GetNumAtoms()}
    for method in methods:
        lig = _ligand(ref, box, args.seed)
        cpu0 = time.process_time()
        (res,) = dock_ligands(receptor, [lig], box, method, num_poses=args.num_poses, seed=args.seed,
                              exhaustiveness=args.exhaustiveness, cpu=args.cpu, model=model)
        cpu_s = time.process_time() - cpu0
        if not res.ok:
            row[method] = {"error": res.error, "seconds": res.seconds, "cpu_s": cpu_s}
            continue
        top = res.poses[0]
        rmsds = [symmetry_rmsd(p.mol, ref) for p in res.poses]
        valid, failed = _pb_valid(top.mol, protein)
        row[method] = {"rmsd": rmsds[0], "best_rmsd_in_poses": min(rmsds), "score": top.score,
                       "pb_valid": valid, "pb_failed": failed, "seconds": res.seconds, "cpu_s": cpu_s}
    return row


def _fmt(entry: dict | None) -> tuple[str, str, str, str]:
    if entry is None:
        return "–", "–", "–", "–"
    if "error" in entry:
        return "error", "–", f"{entry['seconds']:.1f}", f"{entry['cpu_s']:.1f}"
    return (f"{entry['rmsd']:.2f}", "yes" if entry["pb_valid"] else "no", f"{entry['seconds']:.1f}",
            f"{entry['cpu_s']:.1f}")


def print_table(rows: dict, methods) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="redocking: top-1 RMSD (Å) | PoseBusters-valid | wall time (s) | CPU time (s)")
    table.add_column("complex")
    for m in methods:
        for col in ("RMSD", "PB", "wall", "cpu"):
            table.add_column(f"{m} {col}", justify="right")
    for name, row in rows.items():
        table.add_row(name, *[x for m in methods for x in _fmt(row.get(m))])
    summary = {"success (< 2 Å)": [], "PB-valid": [], "success & PB-valid": [], "mean time (s)": [],
               "median best-of-poses RMSD": []}
    for m in methods:
        ok = [r[m] for r in rows.values() if m in r and "error" not in r[m]]
        n = len(rows)
        succ = sum(e["rmsd"] < 2.0 for e in ok)
        pb = sum(e["pb_valid"] for e in ok)
        both = sum(e["rmsd"] < 2.0 and e["pb_valid"] for e in ok)
        secs = [r[m]["seconds"] for r in rows.values() if m in r]
        cpus = [r[m]["cpu_s"] for r in rows.values() if m in r]
        best = [e["best_rmsd_in_poses"] for e in ok]
        summary["success (< 2 Å)"] += [f"{succ}/{n}", "", "", ""]
        summary["PB-valid"] += ["", f"{pb}/{n}", "", ""]
        summary["success & PB-valid"] += [f"{both}/{n}", "", "", ""]
        summary["mean time (s)"] += ["", "", f"{np.mean(secs):.1f}" if secs else "–",
                                     f"{np.mean(cpus):.1f}" if cpus else "–"]
        summary["median best-of-poses RMSD"] += [f"{np.median(best):.2f}" if best else "–", "", "", ""]
    table.add_section()
    for label, cells in summary.items():
        table.add_row(label, *cells)
    Console(width=200).print(table)
    if "vina" in methods:
        for key, label in (("seconds", "wall"), ("cpu_s", "CPU")):
            base = [r["vina"][key] for r in rows.values() if "vina" in r]
            for m in methods:
                other = [r[m][key] for r in rows.values() if m in r]
                if m != "vina" and other and base:
                    print(f"{m}: {np.sum(base) / np.sum(other):.1f}x less {label} time than vina (total "
                          "over the set)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="vina,model,model+vina")
    parser.add_argument("--complexes", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--model", default="dock-demo")
    parser.add_argument("--exhaustiveness", type=int, default=8)
    parser.add_argument("--num-poses", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=1, help="Vina threads (0: all cores)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    from eqtool.errors import EqtoolError

    methods = args.methods.split(",")
    model = None
    if any(m != "vina" for m in methods):
        try:
            from eqtool.dock.pipeline import load_model_poses_fn
            from eqtool.models.files import load_model

            load_model_poses_fn()
            model = load_model(args.model)
        except EqtoolError as exc:
            print(f"model methods skipped: {exc.oneline()}", file=sys.stderr)
            methods = [m for m in methods if m == "vina"]
    names = args.complexes.split(",") if args.complexes else sorted(
        p.name for p in DATA.iterdir() if (p / f"{p.name}_ligand.sdf").is_file())
    rows = {}
    for name in names:
        rows[name] = run_complex(name, methods, model, args)
        done = {m: _fmt(rows[name].get(m)) for m in methods}
        print(f"{name}: {done} (receptor {rows[name]['receptor_s']:.1f} s)", file=sys.stderr, flush=True)
    print(f"exhaustiveness {args.exhaustiveness}, {args.num_poses} poses, seed {args.seed}, Vina threads "
          f"{args.cpu or 'all'}")
    print_table(rows, methods)
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows},
                                        indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
