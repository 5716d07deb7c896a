"""SPHNet sparse gates: forward time and H MAE of QHNet at sparsity 0 (dense) and 0.7, side by side.

Run (one CPU core; with the defaults ~40 minutes: 4 models, then the timings)::

    OMP_NUM_THREADS=1 python data/make_hamiltonian_hexanol.py        # once: the >= 18-atom set (~40 min)
    OMP_NUM_THREADS=1 python benchmarks/hamiltonian_sparsity.py --epochs 300 --pair-layers 2 --tp2-sparsity 0
    python benchmarks/hamiltonian_sparsity.py ... --train-only hexanol/sparse   # one model (run in parallel)

1. Models: for each molecule, two models trained with ``recipes/hamiltonian/water-ethanol.yaml``
   (the ``-direct`` model's recipe: 32 channels, 3 layers, ``lmax`` 2; ``--baseline`` adds a Δ-learning
   baseline to both) on that molecule's training
   conformers only, with the same budget and seed: one with ``model.kwargs.sparsity: 0`` and one
   with ``0.7`` (SPHNet's three-phase TP-gate schedule compressed to the budget: by default random
   for 15 % and adaptive for 30 % of the steps, ``--schedule``, then fixed). Molecules: ethanol
   (9 atoms; the ethanol conformers of ``data/water_ethanol_svp.h5``, 160/20/20) and 1-hexanol
   (21 atoms, 168 AOs; ``data/hexanol_svp.h5`` from ``data/make_hamiltonian_hexanol.py``,
   48/6/6). ``--epochs`` is the ethanol budget; hexanol gets the same number of optimiser steps
   at ``--big-batch-size``. Run folders go to ``--run-root`` and are reused (``--retrain``).
2. H MAE (µHa, all / on-site / off-site blocks of the full matrices) on each molecule's test split.
3. Forward time (median of ``--repeats`` no-grad calls, float32, one thread, the dense and the sparse
   model's calls alternating; glibc's mmap threshold raised as for training): the whole model, and
   the tensor-product work: the pair products (``model.pair_tp``, and ``model.pair_tp2`` with two
   pair layers) plus, for the sparse model, the pair gate that selects the pairs
   (``model.pair_gate``), timed with forward hooks. Timed on the first ``--ethanol-batch`` ethanol
   and ``--big-batch`` hexanol test conformers as one batch each.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # one core unless told otherwise (before torch/numpy load BLAS)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # glibc keeps freed tensors in the heap (docs/training.md, "Training on a CPU"); with its default,
    # each large tensor is a fresh mmap and page faults, noise the small sparse products feel most
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        os.environ.update(MALLOC_MMAP_THRESHOLD_="4294967296", MALLOC_TRIM_THRESHOLD_="4294967296")
        os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "water_ethanol_svp.h5"
RECIPE = ROOT / "recipes" / "hamiltonian" / "water-ethanol.yaml"
BIG = ROOT / "data" / "hexanol_svp.h5"


def ethanol_split(run_root: Path) -> Path:
    """A split file with only the ethanol conformers of the first release's split (160/20/20; the
    shipped split also trains on ethanol conformers 200-299, labelled later)."""
    from eqtool.data.datamodule import open_structures

    split = json.loads((ROOT / "data" / "water_ethanol_svp.split-v1.json").read_text())
    full = open_structures(DATA)
    eth = {k: [i for i in split[k] if full[i].info.get("name") == "ethanol"]
           for k in ("train", "val", "test")}
    path = run_root / "ethanol.split.json"
    path.write_text(json.dumps(eth))
    return path


def gate_parts(args) -> dict[str, float]:
    """The sparse model's per-gate sparsities given on the command line (``pair``, ``tp``, ``tp2``)."""
    parts = {"pair": args.pair_sparsity, "tp": args.tp_sparsity, "tp2": args.tp2_sparsity}
    return {k: v for k, v in parts.items() if v is not None}


def run_dir(molecule: str, kind: str, args) -> Path:
    """``--run-root/[hexanol-]sparsity-<s>[-pair..-tp..-tp2..][-layers2][-lmax<l>][-tpch<c>][-copies<k>]
    [-seed<s>][-<baseline>]``."""
    name = f"sparsity-{0.7 if kind == 'sparse' else 0:g}"
    name += "".join(f"-{k}{v:g}" for k, v in gate_parts(args).items()) if kind == "sparse" else ""
    name += f"-layers{args.pair_layers}" if args.pair_layers != 1 else ""
    name += f"-lmax{args.lmax}" if args.lmax != 2 else ""
    name += f"-tpch{args.pair_tp_channels}" if args.pair_tp_channels else ""
    name += f"-copies{args.pair_tp_copies}" if args.pair_tp_copies != 1 else ""
    name += f"-seed{args.seed}" if args.seed else ""
    name += f"-{args.baseline}" if args.baseline != "none" else ""
    if kind == "sparse" and tuple(args.schedule) != (0.15, 0.30):
        name += "-schedule{:g}-{:g}".format(*args.schedule)
    return args.run_root / (name if molecule == "ethanol" else f"{molecule}-{name}")


def train(molecule: str, kind: str, data: Path, split: Path, args, log) -> Path:
    """Train one model with the shipped recipe on ``molecule`` alone; return its ``model.pt``."""
    from eqtool.config import load_config
    from eqtool.train import train as run_training

    out = run_dir(molecule, kind, args)
    if (out / "model.pt").is_file() and not args.retrain:
        log(f"reusing {out / 'model.pt'} (--retrain to train again)")
        return out / "model.pt"
    n_train = len(json.loads(split.read_text())["train"])
    eth_steps = args.epochs * int(np.ceil(160 / args.batch_size))  # 160 ethanol training conformers
    bs = args.batch_size if molecule == "ethanol" else args.big_batch_size
    per_epoch = int(np.ceil(n_train / bs))
    epochs = max(1, round(eth_steps / per_epoch))
    steps = epochs * per_epoch
    sparsity = 0.7 if kind == "sparse" else 0.0
    overrides = [
        f"data.path={data}", f"data.split={split}", f"data.batch_size={bs}",
        f"model.kwargs.sparsity={sparsity}",
        f"model.kwargs.channels={args.channels}", f"model.kwargs.lmax={args.lmax}",
        f"model.kwargs.baseline={args.baseline}",
        f"model.kwargs.pair_layers={args.pair_layers}",
        *([f"model.kwargs.pair_tp_channels={args.pair_tp_channels}"] if args.pair_tp_channels else []),
        *([f"model.kwargs.pair_tp_copies={args.pair_tp_copies}"] if args.pair_tp_copies != 1 else []),
        f"model.kwargs.tp_random_steps={int(args.schedule[0] * steps)}",
        f"model.kwargs.tp_adaptive_steps={int(args.schedule[1] * steps)}", f"trainer.max_epochs={epochs}",
        *(f"model.kwargs.{k}_sparsity={v}" for k, v in gate_parts(args).items() if sparsity > 0),
        "trainer.max_time=null", "trainer.check_val_every=5", "trainer.log_every=10",
        f"trainer.checkpoint_every_steps={10 * steps}", f"trainer.seed={args.seed}",
    ]
    cfg = load_config(RECIPE, overrides, run_dir=str(out))
    t0 = time.perf_counter()
    if out.exists() and args.retrain:
        import shutil

        shutil.rmtree(out)
    run_training(cfg, log=lambda msg: None)
    log(f"trained {molecule}/{kind}: {epochs} epochs ({steps} steps, batch {bs}) in "
        f"{time.perf_counter() - t0:.0f} s -> {out}")
    return out / "model.pt"


def h_mae(model, graphs, focks) -> dict[str, float]:
    """H MAE in µHa over all / on-site / off-site blocks of whole matrices (PySCF AO order)."""
    from eqtool.dft.basis import ao_counts
    from eqtool.models.hamiltonian.predict import predict_matrices

    errs = {"all": [], "diag": [], "offdiag": []}
    for g, Hp, Hr in zip(graphs, predict_matrices(model, graphs), focks, strict=True):
        e = np.abs(Hp - Hr)
        owner = np.repeat(np.arange(g.n_atoms), ao_counts(g.atomic_numbers))
        same = owner[:, None] == owner[None, :]
        errs["all"].append(e.ravel())
        errs["diag"].append(e[same])
        errs["offdiag"].append(e[~same])
    return {k: float(np.concatenate(v).mean()) * 1e6 for k, v in errs.items()}


class _Timer:
    """Wall time spent inside modules (forward hooks), summed per call of the model."""

    def __init__(self, modules):
        self.total, self._t0 = 0.0, None
        for m in modules:
            m.register_forward_pre_hook(self._start)
            m.register_forward_hook(self._stop)

    def _start(self, *_):
        self._t0 = time.perf_counter()

    def _stop(self, *_):
        self.total += time.perf_counter() - self._t0


def time_forward(models: dict, graphs, repeats: int) -> dict[str, dict[str, float]]:
    """Per model: median ms per forward of the whole model, the pair TP, and TP + pair gate; pairs that
    run the TP. The models' calls alternate (dense, sparse, dense, ...), so a drift in the machine's
    speed hits them alike."""
    import torch

    from eqtool.models.hamiltonian.predict import model_batch

    runs = {}
    for name, model in models.items():
        batch = model_batch(model, graphs, dtype=torch.float32)  # a baseline F0 is computed here, untimed
        products = [model.pair_tp] + ([model.pair_tp2] if model.pair_layers == 2 else [])
        tp, gate = _Timer(products), _Timer([model.pair_gate])  # the dense model never calls its gate
        kept = [0]  # pair rows through the products in the last forward (both products with pair_layers 2)

        def count(module, inputs, output, kept=kept):
            kept[0] += int(inputs[0].shape[0])

        for prod in products:
            prod.register_forward_hook(count)
        runs[name] = (model, batch, tp, gate, kept, [])
    with torch.no_grad():
        for r in range(repeats + 2):
            for model, batch, tp, gate, kept, rows in runs.values():
                tp.total = gate.total = 0.0
                kept[0] = 0
                t0 = time.perf_counter()
                model(batch)
                if r >= 2:  # two warm-up calls
                    rows.append((time.perf_counter() - t0, tp.total, tp.total + gate.total))
    n_pairs = sum(g.n_atoms * (g.n_atoms - 1) for g in graphs)
    out = {}
    for name, (*_, kept, rows) in runs.items():
        med = [statistics.median(x) * 1e3 for x in zip(*rows, strict=True)]
        out[name] = {"forward_ms": med[0], "tp_ms": med[1], "tp_gate_ms": med[2], "tp_pairs": kept[0],
                     "pairs": n_pairs}
    return out


def test_set(data: Path, split: Path):
    """``(graphs, full Fock matrices)`` of the test split."""
    from eqtool.data import keys as K
    from eqtool.data.datamodule import open_structures
    from eqtool.dft.basis import matrix_from_blocks

    full = open_structures(data)
    graphs = [full[i] for i in json.loads(split.read_text())["test"]]
    return graphs, [matrix_from_blocks(np.asarray(g.labels[K.HAMILTONIAN]), g.atomic_numbers) for g in graphs]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dense", type=Path, help="ethanol model file at sparsity 0 (skip its training)")
    p.add_argument("--sparse", type=Path, help="ethanol model file at sparsity > 0 (skip its training)")
    p.add_argument("--epochs", type=int, default=35,
                   help="ethanol training epochs per model (160 conformers, 20 steps an epoch); "
                        "hexanol gets the same number of steps")
    p.add_argument("--batch-size", type=int, default=8, help="ethanol batch size")
    p.add_argument("--big-batch-size", type=int, default=4, help="hexanol batch size")
    p.add_argument("--pair-sparsity", type=float, default=None,
                   help="the sparse model's pair-gate sparsity alone (default: 0.7 like the TP gate)")
    p.add_argument("--tp-sparsity", type=float, default=None,
                   help="the sparse model's TP-gate sparsity alone (default: 0.7 like the pair gate)")
    p.add_argument("--tp2-sparsity", type=float, default=None,
                   help="TP-gate sparsity of the second, pair-gated product (--pair-layers 2; default: "
                        "as --tp-sparsity)")
    p.add_argument("--schedule", type=float, nargs=2, default=(0.15, 0.30), metavar=("RANDOM", "ADAPTIVE"),
                   help="fractions of the training steps in the random and adaptive TP-gate phases")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--pair-tp-channels", type=int, default=None,
                   help="channels of the (first) pair product of both models (default: --channels)")
    p.add_argument("--pair-tp-copies", type=int, default=1,
                   help="both models' pair products see k copies of the hidden irreps (k^2 x the CG paths)")
    p.add_argument("--lmax", type=int, default=2,
                   help="feature lmax of both models (3: 38 CG paths in each pair product instead of 19)")
    p.add_argument("--pair-layers", type=int, default=1, choices=(1, 2),
                   help="2: SPHNet's layout, every pair runs a first product and the pair gate picks "
                        "the pairs of a second one (both models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", default="none", choices=("none", "promolecule"),
                   help="both models learn H - F0 on top of this physics baseline (eqtool.dft.baseline)")
    p.add_argument("--run-root", type=Path, default=ROOT / "runs" / "hamiltonian-sparsity")
    p.add_argument("--retrain", action="store_true", help="train again even if the run folders have model.pt")
    models = [f"{m}/{k}" for m in ("ethanol", "hexanol") for k in ("dense", "sparse")]
    p.add_argument("--train-only", choices=models,
                   help="train this one model and stop (to train several in parallel)")
    p.add_argument("--molecules", nargs="+", choices=("ethanol", "hexanol"), default=["ethanol", "hexanol"],
                   help="train and measure these only (the issue's point needs both)")
    p.add_argument("--repeats", type=int, default=50, help="timed forward calls per model and molecule")
    p.add_argument("--ethanol-batch", type=int, default=16, help="ethanol conformers per timed forward")
    p.add_argument("--big-batch", type=int, default=4, help="hexanol conformers per timed forward")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    from eqtool.models.files import load_model

    torch.set_num_threads(1)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", flush=True)

    if "hexanol" in args.molecules and not BIG.is_file():
        p.error(f"{BIG} is missing: run data/make_hamiltonian_hexanol.py first (~40 min on one core)")
    args.run_root.mkdir(parents=True, exist_ok=True)
    big = (BIG, BIG.with_suffix(".split.json"))
    sets = {m: (DATA, ethanol_split(args.run_root)) if m == "ethanol" else big
            for m in ("ethanol", "hexanol") if m in args.molecules}
    given = {"ethanol/dense": args.dense, "ethanol/sparse": args.sparse}
    paths = {}
    for mol, (data, split) in sets.items():
        for kind in ("dense", "sparse"):
            key = f"{mol}/{kind}"
            if args.train_only and key != args.train_only:
                continue
            paths[key] = given.get(key) or train(mol, kind, data, split, args, log)
    if args.train_only:
        return 0
    res: dict = {}
    sparse_cfg: dict = {}
    for mol, (data, split) in sets.items():
        graphs, focks = test_set(data, split)
        timed = graphs[: args.ethanol_batch if mol == "ethanol" else args.big_batch]
        models = {}
        for kind in ("dense", "sparse"):
            m = models[kind] = load_model(paths[f"{mol}/{kind}"], dtype=torch.float32).eval()
            if kind == "sparse":
                sparse_cfg = m.config  # its gate sparsities head the table
            gate = m.pair_tp.gate
            log(f"{mol}/{kind}: {paths[f'{mol}/{kind}']} (sparsity {m.sparsity:g}, "
                f"{sum(x.numel() for x in m.parameters())} parameters, "
                f"{gate.k if gate.weight is not None else gate.n_paths} of {gate.n_paths} CG paths)")
        times = time_forward(models, timed, args.repeats)
        for kind, m in models.items():
            r = times[kind]
            r.update({f"h_mae_{s}": v for s, v in h_mae(m, graphs, focks).items()})
            r["n_test"], r["n_atoms"], r["n_timed"] = len(graphs), timed[0].n_atoms, len(timed)
            res[f"{mol}/{kind}"] = r
    log("done")
    # ---- table
    cols = [("forward_ms", "forward ms"), ("tp_ms", "pair TPs ms"), ("tp_gate_ms", "TPs+gate ms"),
            ("tp_pairs", "TP rows"), ("h_mae_all", "H MAE µHa"), ("h_mae_diag", "on-site"),
            ("h_mae_offdiag", "off-site")]
    gates = {k: v for k, v in sparse_cfg.items() if k.endswith("sparsity")}
    print("\nQHNet sparsity 0 (dense) vs 0.7 (sparse: " + ", ".join(f"{k} {v:g}" for k, v in gates.items())
          + "); ratio = sparse / dense")
    print(f"{'molecule':<26}{'quantity':<13}{'dense':>11}{'sparse':>11}{'ratio':>8}")
    for mol in sets:
        d, s = res[f"{mol}/dense"], res[f"{mol}/sparse"]
        label = f"{mol} ({d['n_atoms']} at., x{d['n_timed']})"
        for key, title in cols:
            ratio = s[key] / d[key] if d[key] else float("nan")
            fmt = "{:>11.0f}" if key.startswith(("h_mae", "tp_pairs")) else "{:>11.2f}"
            print(f"{label:<26}{title:<13}" + fmt.format(d[key]) + fmt.format(s[key]) + f"{ratio:>8.2f}")
            label = f"  (test: {d['n_test']})" if key == "forward_ms" else ""
        speed = d["tp_gate_ms"] / s["tp_gate_ms"]
        acc = s["h_mae_all"] / d["h_mae_all"]
        print(f"{'':<26}TP work {speed:.2f}x faster, H MAE {acc:.2f}x dense: "
              f"{'meets' if speed >= 2 and acc <= 1.1 else 'misses'} >= 2x and <= 1.10x")
    if args.json:
        args.json.write_text(json.dumps({"models": {k: str(v) for k, v in paths.items()}, "results": res},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
