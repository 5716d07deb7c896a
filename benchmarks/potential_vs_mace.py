"""eqtool's MACE-class potential vs mace-torch: energy+forces speed, and accuracy after equal training.

Both sides run in ONE invocation. mace-torch pins e3nn 0.4.4 and sets a process-wide unsafe-load
flag, so it runs in its own virtual environment ``benchmarks/.venv-mace`` (created on first use:
``python -m venv``, ``pip install torch==2.13.0``, ``pip install mace-torch``) as a subprocess
(:mod:`benchmarks._mace_side`); structures go there as an ``.npz`` with the edges eqtool computed
(both models see the same graphs), results come back as JSON.

Speed (default)::

    python benchmarks/potential_vs_mace.py [--threads 1] [--repeats 10] [--rounds 2] [--sizes 108,864]

times one energy+forces evaluation of rattled fcc Cu (108 and 864 atoms) in float32 and float64
with the same architecture on both sides (default ``64x0e+64x1o``, ``max_ell`` 3, correlation 3,
2 interactions, 5 Å cutoff, Bessel 8, radial MLP 64x3, readout MLP 16), after ``--warmup`` steps;
per round the median of ``--repeats`` steps, and the best round is kept (rounds alternate
mace-torch / eqtool, which evens out a shared machine's load). ``--clock cpu`` (default) measures
process CPU time, the right figure on a shared machine with one thread; use ``--clock wall`` with
``--threads`` > 1. Both models are randomly initialised (E0 = 0, scale 1, shift 0): the script
checks that energies and forces are finite, energies of the same order and the force sums ~ 0.

Accuracy::

    python benchmarks/potential_vs_mace.py --train [--n-train 200] [--epochs 20] [--n-test 0]

trains both on the same seeded subset of the ``data/cu_emt.h5`` training split, the same batch
order, with the same loop (AdamW, MSE on energy per atom and forces with weights 100 / 10, linear
warm-up + cosine LR per epoch, gradient clipping, no EMA), the same E0s (least squares on the
subset), average neighbour count and scale/shift, and the same small architecture (default
``16x0e+16x1o``, ``max_ell`` 2, correlation 2, 4.5 Å, radial MLP 32x2, as
``recipes/potential/cu-quick.yaml``); then prints test-split energy (meV/atom) and force (meV/Å)
MAE/RMSE side by side. ``--n-test 0`` uses the whole test split.

Exit code 0 after a report, 2 on bad options or a failed side. ``--json PATH`` also writes the
raw results.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "benchmarks" / ".venv-mace"
MACE_SIDE = ROOT / "benchmarks" / "_mace_side.py"
TORCH_PIN = "torch==2.13.0"

SPEED_ARCH = {"hidden_irreps": "64x0e+64x1o", "max_ell": 3, "correlation": 3, "num_interactions": 2,
              "cutoff": 5.0, "num_bessel": 8, "radial_mlp": [64, 64, 64], "readout_mlp": 16}
TRAIN_ARCH = {"hidden_irreps": "16x0e+16x1o", "max_ell": 2, "correlation": 2, "num_interactions": 2,
              "cutoff": 4.5, "num_bessel": 8, "radial_mlp": [32, 32], "readout_mlp": 16}


class BenchError(Exception):
    """A problem the user can fix (bad option, failed venv, failed side); printed as one line."""


# ---------------------------------------------------------------------------------------- venv
@functools.cache
def venv_python(venv: Path = VENV) -> Path:
    """The venv's python, creating the venv (torch pinned, then mace-torch) if it lacks mace."""
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if py.exists() and _run_ok([str(py), "-c", "import mace, e3nn, torch"]):
        return py
    print(f"creating {venv} for mace-torch (once; a few minutes) ...", flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(py), "-m", "pip", "install", "-q", TORCH_PIN],
             [str(py), "-m", "pip", "install", "-q", "mace-torch", TORCH_PIN]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise BenchError(f"creating the mace-torch venv failed at `{' '.join(cmd[1:])}`: {tail[0]}")
    if not _run_ok([str(py), "-c", "import mace, e3nn, torch"]):
        raise BenchError(f"{venv} was created but `import mace` fails in it")
    return py


def _run_ok(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run_mace_side(mode: str, cfg: dict, arrays: dict[str, np.ndarray], threads: int) -> dict:
    """Run ``_mace_side.py MODE`` in the venv; files in a temporary folder; returns its JSON."""
    py = venv_python()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="eqtool-vs-mace-") as tmp:
        cfg_path, data_path, out_path = (os.path.join(tmp, n) for n in ("cfg.json", "data.npz", "out.json"))
        with open(cfg_path, "w") as fh:
            json.dump(cfg, fh)
        np.savez(data_path, **arrays)
        proc = subprocess.run([str(py), str(MACE_SIDE), mode, cfg_path, data_path, out_path],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not os.path.exists(out_path):
            sys.stderr.write(proc.stderr[-4000:])
            raise BenchError(f"the mace-torch side ({mode}) failed with exit code {proc.returncode}")
        with open(out_path) as fh:
            return json.load(fh)


# ---------------------------------------------------------------------------------------- data
def graphs_to_arrays(graphs, prefix: str = "", labels: bool = False) -> dict[str, np.ndarray]:
    """AtomGraphs with edges -> the flat arrays ``_mace_side.Systems`` reads (see its docstring)."""
    out = {
        "n_atoms": np.array([g.n_atoms for g in graphs], dtype=np.int64),
        "n_edges": np.array([g.edge_index.shape[1] for g in graphs], dtype=np.int64),
        "positions": np.concatenate([g.positions for g in graphs]),
        "atomic_numbers": np.concatenate([g.atomic_numbers for g in graphs]),
        "cell": np.stack([g.cell for g in graphs]),
        "edge_index": np.concatenate([g.edge_index for g in graphs], axis=1),
        "edge_shift": np.concatenate([g.edge_shift for g in graphs]),
    }
    if labels:
        out["energy"] = np.array([float(g.labels["energy"]) for g in graphs])
        out["forces"] = np.concatenate([g.labels["forces"] for g in graphs])
    return {prefix + k: v for k, v in out.items()}


def fcc_cu(n_atoms: int, seed: int = 1):
    """Rattled (0.05 Å) cubic fcc Cu supercell with ``n_atoms`` = 4 k^3 atoms, as an AtomGraph."""
    from ase.build import bulk

    from eqtool.data import AtomGraph

    k = round((n_atoms / 4) ** (1 / 3))
    if 4 * k ** 3 != n_atoms:
        raise BenchError(f"--sizes: {n_atoms} is not 4*k^3 (fcc cubic supercell), e.g. 32, 108, 256, 864")
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(k)
    atoms.rattle(0.05, seed=seed)
    return AtomGraph.from_ase(atoms, source=f"fcc Cu {k}x{k}x{k}")


def eqtool_model(arch: dict, dtype, seed: int):
    import torch

    from eqtool.models.registry import build_model

    torch.manual_seed(seed)
    e0s = {int(z): float(e) for z, e in (arch.get("e0s") or {}).items()}
    return build_model("mace", atomic_numbers=arch["atomic_numbers"], cutoff=arch["cutoff"],
                       hidden_irreps=arch["hidden_irreps"], max_ell=arch["max_ell"],
                       num_interactions=arch["num_interactions"], correlation=arch["correlation"],
                       num_bessel=arch["num_bessel"], radial_mlp=tuple(arch["radial_mlp"]),
                       readout_mlp=arch["readout_mlp"], avg_num_neighbors=arch["avg_num_neighbors"],
                       e0s=e0s or None, scale=arch.get("scale", 1.0), shift=arch.get("shift", 0.0)).to(dtype)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------- speed
def eqtool_speed(cfg: dict, graphs) -> list[dict]:
    """eqtool's half of the speed benchmark (mirrors ``_mace_side.speed``)."""
    import torch

    from eqtool.data import collate
    from eqtool.physics import compute_outputs

    clock = time.process_time if cfg["clock"] == "cpu" else time.perf_counter
    results = []
    for dtype_name in cfg["dtypes"]:
        dtype = getattr(torch, dtype_name)
        model = eqtool_model(cfg["arch"], dtype, cfg["seed"])
        model.eval()
        for g in graphs:
            batch = collate([g], dtype)

            def step(model=model, batch=batch):
                out = compute_outputs(model, batch, forces=True)
                return out["energy"], out["forces"]

            for _ in range(cfg["warmup"]):
                step()
            times = []
            for _ in range(cfg["repeats"]):
                t0 = clock()
                energy, forces = step()
                times.append(clock() - t0)
            results.append({
                "dtype": dtype_name, "n_atoms": g.n_atoms, "n_edges": int(g.edge_index.shape[1]),
                "times_s": times, "energy": float(energy.sum()),
                "forces_finite": bool(torch.isfinite(forces).all()),
                "max_abs_force_sum": float(forces.sum(0).abs().max()),
                "force_rms": float(forces.square().mean().sqrt()), "n_params": n_params(model),
            })
    return results


def same_order(a: float, b: float, decades: float = 1.0) -> bool:
    """Both finite and within ``decades`` powers of ten of each other in magnitude."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    if a == 0 or b == 0:
        return a == b
    return abs(math.log10(abs(a) / abs(b))) <= decades


def speed(args) -> dict:
    import torch

    from eqtool.models.potential import stats

    torch.set_num_threads(args.threads)
    arch = arch_from_args(args, SPEED_ARCH)
    graphs = [fcc_cu(n).with_edges(arch["cutoff"]) for n in args.sizes]
    arch.update(atomic_numbers=[29], e0s={"29": 0.0}, scale=1.0, shift=0.0,
                avg_num_neighbors=float(stats.compute_avg_num_neighbors(graphs[:1])))
    cfg = {"arch": arch, "dtypes": args.dtypes, "warmup": args.warmup, "repeats": args.repeats,
           "clock": args.clock, "seed": args.seed, "threads": args.threads}
    arrays = graphs_to_arrays(graphs)
    rounds = []
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: mace-torch ...", flush=True)
        mace = run_mace_side("speed", cfg, arrays, args.threads)
        print(f"round {r + 1}/{args.rounds}: eqtool ...", flush=True)
        eq = eqtool_speed(cfg, graphs)
        rounds.append({"mace": mace["results"], "eqtool": eq})
    rows = []
    for i, ref in enumerate(rounds[0]["eqtool"]):
        eq_runs = [rd["eqtool"][i] for rd in rounds]
        mc_runs = [rd["mace"][i] for rd in rounds]
        assert all(m["dtype"] == ref["dtype"] and m["n_atoms"] == ref["n_atoms"] for m in mc_runs)
        t_eq = min(float(np.median(x["times_s"])) for x in eq_runs)
        t_mc = min(float(np.median(x["times_s"])) for x in mc_runs)
        e_eq, e_mc = ref["energy"] / ref["n_atoms"], mc_runs[0]["energy"] / ref["n_atoms"]
        ok = (all(x["forces_finite"] for x in eq_runs + mc_runs) and same_order(e_eq, e_mc)
              and max(x["max_abs_force_sum"] for x in eq_runs + mc_runs) < 1e-3 * max(1.0, ref["n_atoms"]))
        rows.append({"n_atoms": ref["n_atoms"], "n_edges": ref["n_edges"], "dtype": ref["dtype"],
                     "eqtool_ms": 1e3 * t_eq, "mace_ms": 1e3 * t_mc, "ratio": t_eq / t_mc,
                     "eqtool_energy_per_atom": e_eq, "mace_energy_per_atom": e_mc,
                     "eqtool_force_rms": ref["force_rms"], "mace_force_rms": mc_runs[0]["force_rms"],
                     "eqtool_params": ref["n_params"], "mace_params": mc_runs[0]["n_params"],
                     "sanity_ok": ok})
    return {"mode": "speed", "config": cfg, "rows": rows, "rounds": rounds,
            "mace_versions": mace["versions"]}


def print_speed(res: dict) -> None:
    cfg = res["config"]
    arch = cfg["arch"]
    print(f"\narchitecture: {arch['hidden_irreps']}, max_ell {arch['max_ell']}, correlation "
          f"{arch['correlation']}, {arch['num_interactions']} interactions, cutoff {arch['cutoff']} Å, "
          f"radial MLP {arch['radial_mlp']}; threads {cfg['threads']}; clock {cfg['clock']}; "
          f"warm-up {cfg['warmup']}, median of {cfg['repeats']}, best of {len(res['rounds'])} rounds")
    print("\n| atoms | edges | dtype | eqtool ms | mace-torch ms | eqtool/mace-torch "
          "| params eqtool / mace |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for r in res["rows"]:
        print(f"| {r['n_atoms']} | {r['n_edges']} | {r['dtype']} | {r['eqtool_ms']:.1f} | {r['mace_ms']:.1f} "
              f"| {r['ratio']:.2f} | {r['eqtool_params']} / {r['mace_params']} |")
    print("\nsanity (random weights, E0=0): energy per atom eqtool vs mace-torch (eV), force RMS (eV/Å)")
    for r in res["rows"]:
        print(f"  {r['n_atoms']:4d} {r['dtype']}: E/N {r['eqtool_energy_per_atom']:+.4f} vs "
              f"{r['mace_energy_per_atom']:+.4f}; F rms {r['eqtool_force_rms']:.4f} vs "
              f"{r['mace_force_rms']:.4f}; {'ok' if r['sanity_ok'] else 'FAILED'}")


# ---------------------------------------------------------------------------------------- train
def lr_factor(epoch: int, epochs: int, warmup: int, floor: float) -> float:
    """Per-epoch LR factor: linear warm-up from 0.1, then cosine down to ``floor`` (eqtool's task)."""
    if epoch < warmup:
        return 0.1 + 0.9 * epoch / warmup
    t = min(1.0, (epoch - warmup) / max(1, epochs - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def eqtool_evaluate(model, graphs, dtype, batch_size: int) -> dict:
    from eqtool.data import collate
    from eqtool.physics import compute_outputs

    de, df = [], []
    for b0 in range(0, len(graphs), batch_size):
        batch = collate(graphs[b0: b0 + batch_size], dtype)
        out = compute_outputs(model, batch, forces=True)
        de.append(((out["energy"] - batch["energy"]) / batch["n_atoms"].to(dtype)).numpy())
        df.append((out["forces"] - batch["forces"]).numpy().ravel())
    de, df = np.concatenate(de), np.concatenate(df)
    mae = lambda x: 1e3 * float(np.abs(x).mean())  # noqa: E731  (eV -> meV)
    rmse = lambda x: 1e3 * float(np.sqrt(np.mean(x ** 2)))  # noqa: E731
    return {"energy_mae": mae(de), "energy_rmse": rmse(de), "forces_mae": mae(df), "forces_rmse": rmse(df)}


def eqtool_train(cfg: dict, train_graphs, test_graphs) -> dict:
    """eqtool's half of the accuracy benchmark: the same loop as ``_mace_side.train``."""
    import torch

    from eqtool.data import collate
    from eqtool.physics import compute_outputs

    torch.set_num_threads(cfg["threads"])
    dtype = getattr(torch, cfg["dtype"])
    model = eqtool_model(cfg["arch"], dtype, cfg["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    w_e, w_f = cfg["energy_weight"], cfg["forces_weight"]
    history = []
    t_start = time.perf_counter()
    for epoch, order in enumerate(cfg["orders"]):
        for group in opt.param_groups:
            group["lr"] = cfg["lr"] * lr_factor(epoch, len(cfg["orders"]), cfg["warmup_epochs"],
                                                cfg["min_lr"] / cfg["lr"])
        model.train()
        total, steps = 0.0, 0
        for b0 in range(0, len(order), cfg["batch_size"]):
            batch = collate([train_graphs[i] for i in order[b0: b0 + cfg["batch_size"]]], dtype)
            out = compute_outputs(model, batch, forces=True, training=True)
            n = batch["n_atoms"].to(dtype)
            loss = (w_e * ((out["energy"] - batch["energy"]) / n).square().mean()
                    + w_f * (out["forces"] - batch["forces"]).square().mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            opt.step()
            total += float(loss.detach())
            steps += 1
        history.append({"epoch": epoch, "train_loss": total / max(1, steps),
                        "elapsed_s": time.perf_counter() - t_start})
    train_s = time.perf_counter() - t_start
    model.eval()
    t0 = time.perf_counter()
    metrics = eqtool_evaluate(model, test_graphs, dtype, cfg["eval_batch_size"])
    return {"metrics": metrics, "history": history, "train_s": train_s,
            "eval_s": time.perf_counter() - t0, "n_params": n_params(model)}


def load_split(data: Path, split: Path, n_train: int, n_test: int, seed: int, cutoff: float):
    """Seeded subsets of the train/test splits, as AtomGraphs with edges for ``cutoff``."""
    from eqtool.io.hdf5 import read_h5

    for path in (data, split):
        if not path.exists():
            raise BenchError(f"{path}: not found (python data/make_cu_emt.py writes the Cu data)")
    with open(split) as fh:
        parts = json.load(fh)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = np.asarray(parts["train"]), np.asarray(parts["test"])
    if not 0 < n_train <= len(train_idx):
        raise BenchError(f"--n-train must be in 1..{len(train_idx)}, got {n_train}")
    train_idx = np.sort(rng.choice(train_idx, n_train, replace=False))
    if n_test:
        if not 0 < n_test <= len(test_idx):
            raise BenchError(f"--n-test must be in 0..{len(test_idx)}, got {n_test}")
        test_idx = np.sort(rng.choice(test_idx, n_test, replace=False))
    train = [g.with_edges(cutoff) for g in read_h5(data, train_idx.tolist())]
    test = [g.with_edges(cutoff) for g in read_h5(data, test_idx.tolist())]
    return train, test


def train(args) -> dict:
    from eqtool.models.potential import stats

    arch = arch_from_args(args, TRAIN_ARCH)
    train_graphs, test_graphs = load_split(args.data, args.split, args.n_train, args.n_test, args.seed,
                                           arch["cutoff"])
    e0s = stats.fit_e0s(train_graphs)
    scale, shift = stats.compute_scale_shift(train_graphs, e0s)
    arch.update(atomic_numbers=sorted(e0s), e0s={str(z): e for z, e in e0s.items()}, scale=scale, shift=shift,
                avg_num_neighbors=float(stats.compute_avg_num_neighbors(train_graphs)))
    rng = np.random.default_rng(args.seed + 1)
    orders = [rng.permutation(len(train_graphs)).tolist() for _ in range(args.epochs)]
    cfg = {"arch": arch, "dtype": args.dtype, "threads": args.threads, "seed": args.seed, "orders": orders,
           "batch_size": args.batch_size, "eval_batch_size": 16, "lr": args.lr, "min_lr": args.min_lr,
           "warmup_epochs": args.warmup_epochs, "weight_decay": args.weight_decay,
           "energy_weight": args.energy_weight, "forces_weight": args.forces_weight,
           "grad_clip": args.grad_clip}
    print(f"data: {len(train_graphs)} train / {len(test_graphs)} test structures; E0s {e0s}, "
          f"scale {scale:.4f} eV/Å, shift {shift:.4f} eV, avg_num_neighbors {arch['avg_num_neighbors']:.2f}",
          flush=True)
    arrays = {**graphs_to_arrays(train_graphs, "train_", labels=True),
              **graphs_to_arrays(test_graphs, "test_", labels=True)}
    t0 = time.perf_counter()
    print("training mace-torch ...", flush=True)
    mace = run_mace_side("train", cfg, arrays, args.threads)
    print(f"  done in {time.perf_counter() - t0:.0f} s; training eqtool ...", flush=True)
    t0 = time.perf_counter()
    eq = eqtool_train(cfg, train_graphs, test_graphs)
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    cfg_out = {k: v for k, v in cfg.items() if k != "orders"}
    return {"mode": "train", "config": cfg_out, "n_train": len(train_graphs), "n_test": len(test_graphs),
            "eqtool": eq, "mace": mace, "mace_versions": mace["versions"]}


def print_train(res: dict) -> None:
    cfg, arch = res["config"], res["config"]["arch"]
    print(f"\n{res['n_train']} training / {res['n_test']} test structures (data/cu_emt.h5); "
          f"{arch['hidden_irreps']}, max_ell {arch['max_ell']}, correlation {arch['correlation']}, "
          f"{arch['num_interactions']} interactions, cutoff {arch['cutoff']} Å; {cfg['dtype']}; "
          f"epochs {len(res['eqtool']['history'])}, batch {cfg['batch_size']}, lr {cfg['lr']} -> "
          f"{cfg['min_lr']}, weights E {cfg['energy_weight']} / F {cfg['forces_weight']}; "
          f"threads {cfg['threads']}")
    print("\n| model | params | train s | final train loss | E MAE meV/atom | E RMSE meV/atom "
          "| F MAE meV/Å | F RMSE meV/Å |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, key in (("eqtool", "eqtool"), ("mace-torch", "mace")):
        r, m = res[key], res[key]["metrics"]
        print(f"| {name} | {r['n_params']} | {r['train_s']:.0f} | {r['history'][-1]['train_loss']:.4f} "
              f"| {m['energy_mae']:.2f} | {m['energy_rmse']:.2f} | {m['forces_mae']:.1f} "
              f"| {m['forces_rmse']:.1f} |")
    f_eq, f_mc = res["eqtool"]["metrics"]["forces_mae"], res["mace"]["metrics"]["forces_mae"]
    print(f"\nforce MAE eqtool / mace-torch = {f_eq / f_mc:.2f} "
          f"({'eqtool no worse' if f_eq <= f_mc else 'eqtool WORSE'})")


# ---------------------------------------------------------------------------------------- cli
def arch_from_args(args, defaults: dict) -> dict:
    arch = dict(defaults)
    for key in defaults:
        value = getattr(args, key, None)
        if value is not None:
            arch[key] = value
    return arch


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="store_true", help="accuracy mode (default: speed mode)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    g = ap.add_argument_group("architecture (defaults differ per mode, see above)")
    g.add_argument("--hidden-irreps", dest="hidden_irreps")
    g.add_argument("--max-ell", dest="max_ell", type=int)
    g.add_argument("--correlation", type=int)
    g.add_argument("--num-interactions", dest="num_interactions", type=int)
    g.add_argument("--cutoff", type=float)
    g.add_argument("--radial-mlp", dest="radial_mlp", type=_int_list)
    s = ap.add_argument_group("speed")
    s.add_argument("--sizes", type=_int_list, default=[108, 864])
    s.add_argument("--dtypes", default="float32,float64")
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--repeats", type=int, default=10)
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    t = ap.add_argument_group("train")
    t.add_argument("--data", type=Path, default=ROOT / "data" / "cu_emt.h5")
    t.add_argument("--split", type=Path, default=ROOT / "data" / "cu_emt.split.json")
    t.add_argument("--n-train", dest="n_train", type=int, default=200)
    t.add_argument("--n-test", dest="n_test", type=int, default=0, help="0: the whole test split")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", dest="batch_size", type=int, default=4)
    t.add_argument("--lr", type=float, default=0.01)
    t.add_argument("--min-lr", dest="min_lr", type=float, default=1e-4)
    t.add_argument("--warmup-epochs", dest="warmup_epochs", type=int, default=1)
    t.add_argument("--weight-decay", dest="weight_decay", type=float, default=0.0)
    t.add_argument("--energy-weight", dest="energy_weight", type=float, default=100.0)
    t.add_argument("--forces-weight", dest="forces_weight", type=float, default=10.0)
    t.add_argument("--grad-clip", dest="grad_clip", type=float, default=10.0)
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args(argv)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if any(d not in ("float32", "float64") for d in args.dtypes):
        ap.error(f"--dtypes: choose from float32,float64, got {args.dtypes}")
    for name in ("threads", "repeats", "rounds", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    if args.clock == "cpu" and args.threads > 1:
        print("note: --clock cpu sums the CPU time of all threads; use --clock wall with --threads > 1",
              file=sys.stderr)
    return args


def write_json(path: Path, payload: dict) -> None:
    """Atomic write (temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    print(f"{time.strftime('%Y-%m-%d %H:%M')}; {platform.machine()}, {os.cpu_count()} CPUs; torch "
          f"{torch.__version__}; threads {args.threads}", flush=True)
    try:
        res = train(args) if args.train else speed(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mv = res["mace_versions"]
    print(f"\nmace-torch {mv['mace']} (e3nn {mv['e3nn']}, torch {mv['torch']}, {mv['threads']} threads) "
          f"in {VENV}")
    print_train(res) if args.train else print_speed(res)
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
