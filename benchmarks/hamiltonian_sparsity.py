"""SPHNet sparse gates: forward time and H MAE of QHNet at sparsity 0 (dense) and 0.7, side by side.

Run (one CPU core; ~5 minutes with the defaults: 2 x ~2 min training, 1 min PySCF)::

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian_sparsity.py
    OMP_NUM_THREADS=1 python benchmarks/hamiltonian_sparsity.py --epochs 200      # longer training
    python benchmarks/hamiltonian_sparsity.py --dense D.pt --sparse S.pt          # your own models

1. Models: unless ``--dense``/``--sparse`` are given, two models are trained with
   ``recipes/hamiltonian/water-ethanol.yaml`` (the shipped model's recipe: 32 channels, 3 layers,
   ``lmax`` 2) on the ethanol training conformers of ``data/water_ethanol_svp.h5`` only, with the
   same budget (``--epochs`` epochs, same seed), one with ``model.kwargs.sparsity: 0`` and one with
   ``0.7`` (SPHNet's three-phase TP-gate schedule compressed to the budget: random for 15 %,
   adaptive for 30 % of the steps, then fixed). Run folders go to ``--run-root``.
2. H MAE (µHa, all / on-site / off-site blocks) on the 20 held-out ethanol conformers, and on a
   molecule of >= 18 atoms (1-hexanol, 21 atoms, 168 AOs; RDKit ETKDG + MMFF geometry) against a
   PySCF B3LYP/def2-SVP label computed once and cached in ``--run-root`` (``--no-dft`` skips it;
   then that row is timing only). The models never saw hexanol: its MAE shows transfer, not fit.
3. Forward time (median of ``--repeats`` no-grad calls, float32, one thread): the whole model, and
   the pair tensor product alone (``model.pair_tp``, timed with forward hooks; with sparsity the
   pair gate that selects the pairs, ``model.pair_gate``, is timed too and included in "TP+gate").
   Ethanol is timed as a batch of ``--ethanol-batch`` conformers, hexanol as one molecule.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # one core unless told otherwise (before torch/numpy load BLAS)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "water_ethanol_svp.h5"
RECIPE = ROOT / "recipes" / "hamiltonian" / "water-ethanol.yaml"
BIG_SMILES, BIG_NAME = "CCCCCCO", "1-hexanol"


def ethanol_split(run_root: Path) -> tuple[Path, list[int]]:
    """A split file with only the ethanol conformers of the shipped split; returns it and the test indices."""
    from eqtool.data.datamodule import open_structures

    split = json.loads(DATA.with_suffix(".split.json").read_text())
    full = open_structures(DATA)
    eth = {k: [i for i in split[k] if full[i].info.get("name") == "ethanol"]
           for k in ("train", "val", "test")}
    path = run_root / "ethanol.split.json"
    path.write_text(json.dumps(eth))
    return path, eth["test"]


def train(sparsity: float, args, split: Path, log) -> Path:
    """Train one model with the shipped recipe on ethanol; return its ``model.pt``."""
    from eqtool.config import load_config
    from eqtool.train import train as run_training

    parts = {"pair": args.pair_sparsity, "tp": args.tp_sparsity} if sparsity > 0 else {}
    extra = "".join(f"-{k}{v:g}" for k, v in parts.items() if v is not None)
    extra += f"-layers{args.pair_layers}" if args.pair_layers != 1 else ""
    run_dir = args.run_root / f"sparsity-{sparsity:g}{extra}"
    if (run_dir / "model.pt").is_file() and not args.retrain:
        log(f"reusing {run_dir / 'model.pt'} (--retrain to train again)")
        return run_dir / "model.pt"
    steps = args.epochs * int(np.ceil(160 / args.batch_size))  # 160 ethanol training conformers
    overrides = [
        f"data.split={split}", f"data.batch_size={args.batch_size}", f"model.kwargs.sparsity={sparsity}",
        f"model.kwargs.channels={args.channels}", f"model.kwargs.pair_layers={args.pair_layers}",
        f"model.kwargs.tp_random_steps={int(0.15 * steps)}",
        f"model.kwargs.tp_adaptive_steps={int(0.30 * steps)}", f"trainer.max_epochs={args.epochs}",
        *(f"model.kwargs.{k}_sparsity={v}" for k, v in parts.items() if v is not None),
        "trainer.max_time=null", "trainer.check_val_every=5", "trainer.log_every=10",
        f"trainer.checkpoint_every_steps={10 * steps}", f"trainer.seed={args.seed}",
    ]
    cfg = load_config(RECIPE, overrides, run_dir=str(run_dir))
    t0 = time.perf_counter()
    if run_dir.exists() and args.retrain:
        import shutil

        shutil.rmtree(run_dir)
    run_training(cfg, log=lambda msg: None)
    log(f"trained sparsity {sparsity:g}: {args.epochs} epochs ({steps} steps) in "
        f"{time.perf_counter() - t0:.0f} s -> {run_dir}")
    return run_dir / "model.pt"


def big_molecule(run_root: Path, dft: bool, log):
    """``(AtomGraph, fock or None)`` of 1-hexanol; the B3LYP/def2-SVP label is cached as .npz."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from eqtool.data.graph import AtomGraph

    mol = Chem.AddHs(Chem.MolFromSmiles(BIG_SMILES))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    AllChem.MMFFOptimizeMolecule(mol)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    pos = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    graph = AtomGraph(pos, z, info={"name": BIG_NAME})
    if not dft:
        return graph, None
    cache = run_root / "hexanol_b3lyp_def2svp.npz"
    if cache.is_file() and np.allclose(np.load(cache)["positions"], pos, atol=1e-8):
        return graph, np.load(cache)["fock"]
    from eqtool.dft.pyscf_tools import build_mol, run_rks

    t0 = time.perf_counter()
    r = run_rks(build_mol(z, pos), conv_tol=1e-9)
    np.savez(cache, fock=r.fock, positions=pos)
    log(f"{BIG_NAME}: B3LYP/def2-SVP label in {time.perf_counter() - t0:.0f} s ({r.cycles} cycles), cached")
    return graph, r.fock


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


def time_forward(model, graphs, repeats: int) -> dict[str, float]:
    """Median ms per forward of the whole model, the pair TP, and TP + pair gate; pairs that run the TP."""
    import torch

    from eqtool.data.batch import collate

    batch = collate(graphs, dtype=torch.float32, label_keys=())
    products = [model.pair_tp] + ([model.pair_tp2] if model.pair_layers == 2 else [])
    tp, gate = _Timer(products), _Timer([model.pair_gate])  # the dense model never calls its gate
    kept = [0]  # pair rows through the products in the last forward (both products with pair_layers 2)

    def count(module, inputs, output):
        kept[0] += int(inputs[0].shape[0])

    for prod in products:
        prod.register_forward_hook(count)
    rows = []
    with torch.no_grad():
        for r in range(repeats + 2):
            tp.total = gate.total = 0.0
            kept[0] = 0
            t0 = time.perf_counter()
            model(batch)
            if r >= 2:  # two warm-up calls
                rows.append((time.perf_counter() - t0, tp.total, tp.total + gate.total))
    med = [statistics.median(x) * 1e3 for x in zip(*rows, strict=True)]
    n_pairs = sum(g.n_atoms * (g.n_atoms - 1) for g in graphs)
    return {"forward_ms": med[0], "tp_ms": med[1], "tp_gate_ms": med[2], "tp_pairs": kept[0],
            "pairs": n_pairs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dense", type=Path, help="model file at sparsity 0 (skip training)")
    p.add_argument("--sparse", type=Path, help="model file at sparsity > 0 (skip training)")
    p.add_argument("--epochs", type=int, default=35,
                   help="training epochs per model (160 ethanol conformers, 20 steps an epoch)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--pair-sparsity", type=float, default=None,
                   help="the sparse model's pair-gate sparsity alone (default: 0.7 like the TP gate)")
    p.add_argument("--tp-sparsity", type=float, default=None,
                   help="the sparse model's TP-gate sparsity alone (default: 0.7 like the pair gate)")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--pair-layers", type=int, default=1, choices=(1, 2),
                   help="2: SPHNet's layout, every pair runs a first product and the pair gate picks "
                        "the pairs of a second one (both models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-root", type=Path, default=ROOT / "runs" / "hamiltonian-sparsity")
    p.add_argument("--retrain", action="store_true", help="train again even if the run folders have model.pt")
    p.add_argument("--repeats", type=int, default=20, help="timed forward calls per model and molecule")
    p.add_argument("--ethanol-batch", type=int, default=16, help="ethanol conformers per timed forward")
    p.add_argument("--no-dft", action="store_true", help=f"no PySCF label for {BIG_NAME}: time only")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    from eqtool.data import keys as K
    from eqtool.data.datamodule import open_structures
    from eqtool.dft.basis import matrix_from_blocks
    from eqtool.models.files import load_model

    torch.set_num_threads(1)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", flush=True)

    args.run_root.mkdir(parents=True, exist_ok=True)
    split, test_idx = ethanol_split(args.run_root)
    paths = {"dense": args.dense or train(0.0, args, split, log),
             "sparse": args.sparse or train(0.7, args, split, log)}
    models = {k: load_model(v, dtype=torch.float32).eval() for k, v in paths.items()}
    for k, m in models.items():
        gate = m.pair_tp.gate
        log(f"{k}: {paths[k]} (sparsity {m.sparsity:g}, {sum(x.numel() for x in m.parameters())} parameters, "
            f"{gate.k if gate.weight is not None else gate.n_paths} of {gate.n_paths} CG paths)")
    full = open_structures(DATA)
    eth = [full[i] for i in test_idx]
    eth_focks = [matrix_from_blocks(np.asarray(g.labels[K.HAMILTONIAN]), g.atomic_numbers) for g in eth]
    big, big_fock = big_molecule(args.run_root, not args.no_dft, log)
    cases = {"ethanol": (eth, eth_focks, eth[: args.ethanol_batch]),
             BIG_NAME: ([big], None if big_fock is None else [big_fock], [big])}
    res: dict = {}
    for name, (graphs, focks, timed) in cases.items():
        for k, m in models.items():
            r = time_forward(m, timed, args.repeats)
            if focks is not None:
                r.update({f"h_mae_{s}": v for s, v in h_mae(m, graphs, focks).items()})
            res[f"{name}/{k}"] = r
    log("done")
    # ---- table
    cols = [("forward_ms", "forward ms"), ("tp_ms", "pair TP ms"), ("tp_gate_ms", "TP+gate ms"),
            ("tp_pairs", "TP pairs"), ("h_mae_all", "H MAE µHa"), ("h_mae_diag", "on-site"),
            ("h_mae_offdiag", "off-site")]
    print(f"\nQHNet sparsity 0 (dense) vs {models['sparse'].sparsity:g} (sparse); ratio = sparse / dense")
    print(f"{'molecule':<22}{'quantity':<12}{'dense':>11}{'sparse':>11}{'ratio':>8}")
    for name, (_, _, timed) in cases.items():
        d, s = res[f"{name}/dense"], res[f"{name}/sparse"]
        label = f"{name} ({timed[0].n_atoms} at. x{len(timed)})"
        for key, title in cols:
            if key not in d:
                continue
            ratio = s[key] / d[key] if d[key] else float("nan")
            fmt = "{:>11.0f}" if key.startswith(("h_mae", "tp_pairs")) else "{:>11.2f}"
            print(f"{label:<22}{title:<12}" + fmt.format(d[key]) + fmt.format(s[key]) + f"{ratio:>8.2f}")
            label = ""
    if args.json:
        args.json.write_text(json.dumps({"models": {k: str(v) for k, v in paths.items()}, "results": res},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
