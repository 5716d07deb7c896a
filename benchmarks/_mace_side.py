"""The mace-torch half of ``benchmarks/potential_vs_mace.py``; runs inside ``benchmarks/.venv-mace``.

mace-torch pins e3nn 0.4.4 and flips a process-wide ``torch.load`` flag on import, so it never
shares a process (or an environment) with eqtool. This script imports only numpy, torch, e3nn and
mace; it is driven by the parent through files::

    python _mace_side.py speed CONFIG.json DATA.npz OUT.json
    python _mace_side.py train CONFIG.json DATA.npz OUT.json

``DATA.npz`` holds systems already turned into graphs by eqtool (same edges on both sides):

    n_atoms [S], n_edges [S], positions [sum N, 3] Å, atomic_numbers [sum N], cell [S, 3, 3],
    edge_index [2, sum E] (per-system atom indices; row 0 sender, row 1 receiver),
    edge_shift [sum E, 3] integer cell shifts (eqtool convention:
    ``vec = pos[sender] - pos[receiver] + shift @ cell``), and for training energy [S] eV,
    forces [sum N, 3] eV/Å; arrays prefixed ``train_`` / ``test_`` in train mode.

mace uses ``vec = pos[receiver] - pos[sender] + shifts``, so edges keep their sender/receiver and
get ``shifts = -shift @ cell``: every atom aggregates over the same neighbours on both sides.
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
import torch


class Systems:
    """Graphs of one dataset in flat arrays; :meth:`batch` builds mace's input dict for some systems."""

    def __init__(self, npz, prefix: str, elements: list[int], dtype: torch.dtype):
        get = lambda k: npz[prefix + k]  # noqa: E731
        self.n_atoms = get("n_atoms").astype(np.int64)
        self.n_edges = get("n_edges").astype(np.int64)
        self.atom_off = np.concatenate([[0], np.cumsum(self.n_atoms)])
        self.edge_off = np.concatenate([[0], np.cumsum(self.n_edges)])
        self.positions = get("positions")
        self.numbers = get("atomic_numbers")
        self.cell = get("cell")
        self.edge_index = get("edge_index")
        self.edge_shift = get("edge_shift")
        keys = set(npz.files)
        self.energy = get("energy") if prefix + "energy" in keys else None
        self.forces = get("forces") if prefix + "forces" in keys else None
        self.elem_of_z = {z: i for i, z in enumerate(elements)}
        self.n_el = len(elements)
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.n_atoms)

    def batch(self, idx) -> dict[str, torch.Tensor]:
        pos, num, ei, shifts, unit, cells, e, f = [], [], [], [], [], [], [], []
        offset = 0
        for s in idx:
            a0, a1 = self.atom_off[s], self.atom_off[s + 1]
            e0, e1 = self.edge_off[s], self.edge_off[s + 1]
            pos.append(self.positions[a0:a1])
            num.append(self.numbers[a0:a1])
            ei.append(self.edge_index[:, e0:e1] + offset)
            sh = -self.edge_shift[e0:e1].astype(np.float64)  # [E_s, 3] mace sign convention
            unit.append(sh)
            shifts.append(sh @ self.cell[s])
            cells.append(self.cell[s])
            if self.energy is not None:
                e.append(self.energy[s])
                f.append(self.forces[a0:a1])
            offset += a1 - a0
        n = self.n_atoms[list(idx)]
        z = np.concatenate(num)
        attrs = np.zeros((len(z), self.n_el))
        attrs[np.arange(len(z)), [self.elem_of_z[int(v)] for v in z]] = 1.0
        t = lambda x: torch.as_tensor(np.asarray(x), dtype=self.dtype)  # noqa: E731
        out = {
            "positions": t(np.concatenate(pos)),
            "node_attrs": t(attrs),
            "edge_index": torch.as_tensor(np.concatenate(ei, axis=1), dtype=torch.long),
            "shifts": t(np.concatenate(shifts)),
            "unit_shifts": t(np.concatenate(unit)),
            "cell": t(np.concatenate(cells)),  # [B*3, 3] as mace's data loader stacks it
            "batch": torch.repeat_interleave(torch.arange(len(n)), torch.as_tensor(n)),
            "ptr": torch.as_tensor(np.concatenate([[0], np.cumsum(n)]), dtype=torch.long),
            "head": torch.zeros(len(n), dtype=torch.long),
            "n_atoms": torch.as_tensor(n),
        }
        if e:
            out["ref_energy"] = t(np.asarray(e))
            out["ref_forces"] = t(np.concatenate(f))
        return out


def build_model(arch: dict, dtype: torch.dtype):
    """``ScaleShiftMACE`` with the hyperparameters eqtool's ``MACE`` takes (same names)."""
    # mace first: importing it sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, which e3nn 0.4.4's import needs
    from mace import modules  # noqa: I001
    from e3nn import o3

    torch.set_default_dtype(dtype)
    residual = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    elements = [int(z) for z in arch["atomic_numbers"]]
    e0s = arch.get("e0s") or {}
    model = modules.ScaleShiftMACE(
        r_max=float(arch["cutoff"]), num_bessel=int(arch["num_bessel"]), num_polynomial_cutoff=5,
        max_ell=int(arch["max_ell"]), interaction_cls=residual, interaction_cls_first=residual,
        num_interactions=int(arch["num_interactions"]), num_elements=len(elements),
        hidden_irreps=o3.Irreps(arch["hidden_irreps"]), MLP_irreps=o3.Irreps(f"{arch['readout_mlp']}x0e"),
        gate=torch.nn.functional.silu,
        atomic_energies=np.array([float(e0s.get(str(z), 0.0)) for z in elements]),
        avg_num_neighbors=float(arch["avg_num_neighbors"]), atomic_numbers=elements,
        correlation=int(arch["correlation"]), radial_MLP=[int(w) for w in arch["radial_mlp"]],
        radial_type="bessel", atomic_inter_scale=float(arch.get("scale", 1.0)),
        atomic_inter_shift=float(arch.get("shift", 0.0)),
    )
    return model.to(dtype)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def speed(cfg: dict, npz) -> dict:
    """Energy + forces time per step for every system in ``npz`` (one model per dtype)."""
    results = []
    for dtype_name in cfg["dtypes"]:
        dtype = getattr(torch, dtype_name)
        torch.manual_seed(cfg["seed"])
        model = build_model(cfg["arch"], dtype)
        model.eval()
        systems = Systems(npz, "", cfg["arch"]["atomic_numbers"], dtype)
        for s in range(len(systems)):
            batch = systems.batch([s])
            clock = time.process_time if cfg["clock"] == "cpu" else time.perf_counter

            def step(model=model, batch=batch):
                out = model(dict(batch), training=False, compute_force=True)
                return out["energy"].detach(), out["forces"].detach()

            for _ in range(cfg["warmup"]):
                step()
            times = []
            for _ in range(cfg["repeats"]):
                t0 = clock()
                energy, forces = step()
                times.append(clock() - t0)
            results.append({
                "dtype": dtype_name, "n_atoms": int(systems.n_atoms[s]), "n_edges": int(systems.n_edges[s]),
                "times_s": times, "energy": float(energy.sum()),
                "forces_finite": bool(torch.isfinite(forces).all()),
                "max_abs_force_sum": float(forces.sum(0).abs().max()),
                "force_rms": float(forces.square().mean().sqrt()),
                "n_params": n_params(model),
            })
    return {"results": results, "versions": _versions()}


def lr_factor(epoch: int, epochs: int, warmup: int, floor: float) -> float:
    """Per-epoch LR factor: linear warm-up from 0.1, then cosine down to ``floor`` (as eqtool's task)."""
    if epoch < warmup:
        return 0.1 + 0.9 * epoch / warmup
    t = min(1.0, (epoch - warmup) / max(1, epochs - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def evaluate(model, systems: Systems, batch_size: int) -> dict:
    """Test metrics: energy MAE/RMSE in meV/atom, force MAE/RMSE in meV/Å."""
    de, df = [], []
    for b0 in range(0, len(systems), batch_size):
        batch = systems.batch(range(b0, min(len(systems), b0 + batch_size)))
        out = model(dict(batch), training=False, compute_force=True)
        n = batch["n_atoms"].to(batch["positions"].dtype)
        de.append(((out["energy"].detach() - batch["ref_energy"]) / n).numpy())
        df.append((out["forces"].detach() - batch["ref_forces"]).numpy().ravel())
    de, df = np.concatenate(de), np.concatenate(df)
    mae = lambda x: 1e3 * float(np.abs(x).mean())  # noqa: E731  (eV -> meV)
    rmse = lambda x: 1e3 * float(np.sqrt(np.mean(x ** 2)))  # noqa: E731
    return {"energy_mae": mae(de), "energy_rmse": rmse(de), "forces_mae": mae(df), "forces_rmse": rmse(df)}


def train(cfg: dict, npz) -> dict:
    """Train with the loop of ``potential_vs_mace.train_eqtool`` (same order, loss, optimiser)."""
    dtype = getattr(torch, cfg["dtype"])
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["arch"], dtype)
    elements = cfg["arch"]["atomic_numbers"]
    train_set = Systems(npz, "train_", elements, dtype)
    test_set = Systems(npz, "test_", elements, dtype)
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
            batch = train_set.batch(order[b0: b0 + cfg["batch_size"]])
            out = model(dict(batch), training=True, compute_force=True)
            n = batch["n_atoms"].to(dtype)
            loss = (w_e * ((out["energy"] - batch["ref_energy"]) / n).square().mean()
                    + w_f * (out["forces"] - batch["ref_forces"]).square().mean())
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
    metrics = evaluate(model, test_set, cfg["eval_batch_size"])
    return {"metrics": metrics, "history": history, "train_s": train_s,
            "eval_s": time.perf_counter() - t0, "n_params": n_params(model), "versions": _versions()}


def _versions() -> dict:
    import mace  # noqa: I001 (before e3nn, see build_model)
    import e3nn

    return {"torch": torch.__version__, "e3nn": e3nn.__version__,
            "mace": getattr(mace, "__version__", "?"), "threads": torch.get_num_threads()}


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("speed", "train"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, cfg_path, data_path, out_path = argv
    with open(cfg_path) as fh:
        cfg = json.load(fh)
    torch.set_num_threads(int(cfg["threads"]))
    with np.load(data_path) as npz:
        data = {k: npz[k] for k in npz.files}
    npz = _Arrays(data)
    result = speed(cfg, npz) if mode == "speed" else train(cfg, npz)
    with open(out_path, "w") as fh:
        json.dump(result, fh)
    return 0


class _Arrays(dict):
    """A dict with the ``files`` attribute of ``NpzFile`` (arrays loaded once)."""

    @property
    def files(self) -> list[str]:
        return list(self)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
