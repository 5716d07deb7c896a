"""End-of-training report: test-set predictions, metrics JSON, parity and learning-curve plots.

Plots use matplotlib's ``Agg`` backend (no display needed). Units: energy meV/atom, forces meV/Å,
stress meV/Å³ in metrics; eV/atom and eV/Å on the parity axes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from eqtool.data import keys as K
from eqtool.tasks.losses import STRESS_MASK

__all__ = ["predict_arrays", "error_metrics", "parity_plot", "learning_curve", "write_json",
           "read_csv_logs"]


def predict_arrays(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                   device="cpu", stress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Run ``model`` over ``batches`` and gather predictions and references as float64 arrays.

    Returns:
        ``{"energy": {"pred": [B] eV/atom, "ref": ...}, "forces": {"pred": [N, 3], "ref": ...},
        "stress": {"pred": [S, 3, 3], "ref": ...}}`` (stress only for systems with a real label).
    """
    from eqtool.data.batch import to_device
    from eqtool.physics import compute_outputs

    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float64)
    acc: dict[str, dict[str, list]] = {k: {"pred": [], "ref": []} for k in ("energy", "forces", "stress")}
    for batch in batches:
        batch = to_device(batch, device, dtype)
        want_stress = stress and STRESS_MASK in batch and bool(batch[STRESS_MASK].any())
        with torch.enable_grad():
            out = compute_outputs(model, batch, forces=K.FORCES in batch, stress=want_stress, training=False)
        n = batch[K.N_ATOMS].to(torch.float64).cpu()
        acc["energy"]["pred"].append(out[K.ENERGY].detach().cpu().double() / n)
        acc["energy"]["ref"].append(batch[K.ENERGY].cpu().double() / n)
        if K.FORCES in batch:
            acc["forces"]["pred"].append(out[K.FORCES].detach().cpu().double())
            acc["forces"]["ref"].append(batch[K.FORCES].cpu().double())
        if want_stress:
            m = batch[STRESS_MASK].cpu() > 0
            acc["stress"]["pred"].append(out[K.STRESS].detach().cpu().double()[m])
            acc["stress"]["ref"].append(batch[K.STRESS].cpu().double()[m])
    return {k: {s: torch.cat(v[s]).numpy() for s in v} for k, v in acc.items() if v["pred"]}


def error_metrics(arrays: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """MAE/RMSE in meV/atom, meV/Å, meV/Å³ (keys ``energy_mae``, ``forces_rmse``, ...)."""
    out = {}
    for name, d in arrays.items():
        err = (d["pred"] - d["ref"]).reshape(-1)
        if err.size:
            out[f"{name}_mae"] = 1000.0 * float(np.abs(err).mean())
            out[f"{name}_rmse"] = 1000.0 * float(np.sqrt(np.square(err).mean()))
    return out


def write_json(path: str | Path, data) -> None:
    from eqtool.io.atomic import atomic_write

    with atomic_write(path) as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")


def _savefig(fig, path: Path) -> None:
    from eqtool.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")


def parity_plot(arrays: dict[str, dict[str, np.ndarray]], path: str | Path, title: str = "test") -> None:
    """Predicted vs reference energy per atom (eV/atom) and force components (eV/Å)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, unit) for k, unit in (("energy", "eV/atom"), ("forces", "eV/Å"), ("stress", "eV/Å³"))
              if k in arrays]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (name, unit) in zip(axes[0], panels, strict=True):
        ref, pred = arrays[name]["ref"].reshape(-1), arrays[name]["pred"].reshape(-1)
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.scatter(ref, pred, s=4, alpha=0.5)
        mae = np.abs(pred - ref).mean() * 1000
        ax.set_title(f"{name} ({title}), MAE {mae:.3g} m{unit}")
        ax.set_xlabel(f"reference ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
    fig.tight_layout()
    _savefig(fig, Path(path))
    plt.close(fig)


def read_csv_logs(log_root: str | Path) -> list[dict[str, float]]:
    """All rows of ``log_root/version_*/metrics.csv`` (sessions of a resumed run), in step order."""
    rows = []
    for file in sorted(Path(log_root).glob("version_*/metrics.csv"),
                       key=lambda p: int(p.parent.name.split("_")[-1])):
        with open(file, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def learning_curve(log_root: str | Path, path: str | Path) -> None:
    """Training and validation loss (and force MAE) per epoch from the CSV logs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_epoch: dict[str, dict[int, float]] = {}
    for row in read_csv_logs(log_root):
        if "epoch" not in row:
            continue
        for key in ("train/loss_epoch", "val/loss", "val/forces_mae", "val/energy_mae"):
            if key in row:
                per_epoch.setdefault(key, {})[int(row["epoch"])] = row[key]  # a resumed epoch wins
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for key, label in (("train/loss_epoch", "train"), ("val/loss", "val")):
        if key in per_epoch:
            ep = sorted(per_epoch[key])
            axes[0].plot(ep, [per_epoch[key][e] for e in ep], marker=".", label=label)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    for key, label in (("val/energy_mae", "energy (meV/atom)"), ("val/forces_mae", "forces (meV/Å)")):
        if key in per_epoch:
            ep = sorted(per_epoch[key])
            axes[1].plot(ep, [per_epoch[key][e] for e in ep], marker=".", label=label)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation MAE")
    axes[1].legend()
    fig.tight_layout()
    _savefig(fig, Path(path))
    plt.close(fig)
