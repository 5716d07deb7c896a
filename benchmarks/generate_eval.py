"""Quality and speed of a diffusion model's samples: EDM's metrics, full chain vs respaced chains.

Run::

    python benchmarks/generate_eval.py [--model qm9-edm] [-n 500] [--seed 0] [--steps full,250,100,50]
                                       [--batch-size 100] [--threads 1] [--json results.json] [--no-clip]

For every chain length the same atom counts (drawn from the model's training histogram with
``--seed``) are sampled with the same seed; each row reports atom and molecule stability, RDKit
validity, uniqueness, valid-and-unique, novelty against the training SMILES stored in the model
file, the molecules whose chain diverged (non-finite coordinates; counted as unstable and invalid),
and the sampling wall time per molecule (network only; metrics excluded). ``--no-clip`` samples
without the sampler's clip of the denoised features (to measure what the clip changes). The issue's
targets for ``qm9-edm`` on 500 samples (seed 0) are printed alongside: atom stability >= 90 %,
validity >= 60 %, uniqueness >= 90 % (EDM's paper: 98.7 / 91.9 valid / 90.7 valid-and-unique).
Exit code 0 always (a report, not a test), 2 on bad options.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"atom_stability": 0.90, "validity": 0.60, "uniqueness": 0.90}
EDM_PAPER = {"atom_stability": 0.987, "molecule_stability": 0.820, "validity": 0.919, "valid_unique": 0.907}


def evaluate(model, payload, n: int, seed: int, steps: int | None, batch_size: int,
             clip_features: bool = True) -> dict:
    """Sample ``n`` molecules with ``steps`` network evaluations; metrics dict + timing."""
    import torch

    from eqtool.chem import analyze_sample, summarize
    from eqtool.models.generative import sample, sample_n_atoms
    from eqtool.tasks.generative import read_train_smiles

    counts = sample_n_atoms(model, n, torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed)
    mols = []
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        mols += sample(model, counts[i: i + batch_size], steps=steps, generator=gen,
                       clip_features=clip_features)
    seconds = time.perf_counter() - t0
    metrics = summarize([analyze_sample(m) for m in mols], read_train_smiles(payload, payload["path"]))
    metrics.update(steps=steps or model.timesteps + 1, seconds=seconds, seconds_per_molecule=seconds / n)
    return metrics


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="qm9-edm")
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", default="full,100", help="comma list: 'full' or network evaluations")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--no-clip", action="store_true",
                   help="sample without clipping the denoised features (the sampler's clip_features=False)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    from eqtool.cli.generate import check_options, load_generator
    from eqtool.errors import EqtoolError

    torch.set_num_threads(args.threads)
    try:
        model, payload = load_generator(args.model)
        chains = [None if s.strip() == "full" else int(s) for s in args.steps.split(",")]
        for steps in chains:
            check_options(model, args.n, None, steps, args.batch_size)
    except (EqtoolError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"model {payload['path']} ({sum(p.numel() for p in model.parameters()):,} parameters), "
          f"n={args.n}, seed={args.seed}, threads={args.threads}"
          + (", features not clipped" if args.no_clip else ""))
    rows = []
    for steps in chains:
        r = evaluate(model, payload, args.n, args.seed, steps, args.batch_size, not args.no_clip)
        rows.append(r)
        print(f"  {r['steps']} evaluations: {r['seconds']:.0f} s; atom stable {_pct(r['atom_stability'])}, "
              f"valid {_pct(r['validity'])}, unique {_pct(r['uniqueness'])}, "
              f"non-finite {r['n_nonfinite']}", flush=True)
    cols = ("atom_stability", "molecule_stability", "validity", "uniqueness", "valid_unique", "novelty")
    print("\n| chain (network evaluations) | atom stable | mol stable | valid | unique | valid & unique | "
          "novel | s / molecule |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = "full" if r["steps"] == model.timesteps + 1 else "respaced"
        print(f"| {name} ({r['steps']}) | " + " | ".join(_pct(r[c]) for c in cols)
              + f" | {r['seconds_per_molecule']:.3f} |")
    print("| issue target (500 samples) | >= 90 % | | >= 60 % | >= 90 % | | | |")
    print("| EDM paper | 98.7 % | 82.0 % | 91.9 % | | 90.7 % | | |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": payload["path"], "n": args.n, "seed": args.seed,
                                               "threads": args.threads, "clip_features": not args.no_clip,
                                               "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
