"""``eqtool train``: train a model from a YAML recipe (all work in :func:`eqtool.train.train`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["train", "metrics_table", "scalar_table"]


def metrics_table(metrics: dict, title: str):
    """A rich table of ``{"energy_mae": ..., ...}`` (meV/atom, meV/Å, meV/Å³)."""
    from rich.table import Table

    from eqtool.tasks.metrics import UNITS

    table = Table(title=title)
    for col in ("quantity", "MAE", "RMSE", "unit"):
        table.add_column(col, justify="left" if col in ("quantity", "unit") else "right")
    for name, unit in UNITS.items():
        if f"{name}_mae" in metrics:
            table.add_row(name, f"{metrics[f'{name}_mae']:.3f}", f"{metrics[f'{name}_rmse']:.3f}", unit)
    return table


def train(
    recipe: Path = typer.Argument(..., help="YAML recipe (see recipes/)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe value: KEY.SUB=VALUE (repeat)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN_DIR/checkpoints/last.ckpt."),
    run_dir: str | None = typer.Option(None, "--run-dir", help="Run folder (default: recipe's)."),
    accelerator: str | None = typer.Option(None, "--accelerator", help="cpu, gpu or auto."),
    devices: str | None = typer.Option(None, "--devices", help="Devices per node: 2, auto, '0,1'."),
    num_nodes: int | None = typer.Option(None, "--num-nodes", help="Number of nodes (trainer.num_nodes)."),
    strategy: str | None = typer.Option(None, "--strategy", help="auto, ddp, ... (trainer.strategy)."),
) -> None:
    """Train a model from a YAML recipe; writes checkpoints, logs, plots, test metrics and model.pt.

    Example: eqtool train recipes/potential/cu-quick.yaml --set trainer.max_epochs=5
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from rich.console import Console

    from eqtool.config import load_config
    from eqtool.train import train as run_training

    given = (("accelerator", accelerator), ("devices", devices), ("num_nodes", num_nodes),
             ("strategy", strategy))
    extra = [f"trainer.{k}={v}" for k, v in given if v is not None]
    cfg = load_config(recipe, [*overrides, *extra], run_dir=run_dir)
    console = Console(stderr=True)
    out = run_training(cfg, resume=resume, log=lambda msg: console.print(msg, markup=False, highlight=False))
    if rank_zero_only.rank != 0:
        return
    metrics_file = Path(out) / "test_metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        title = f"{metrics.get('split', 'test')} metrics ({out})"
        table = metrics_table(metrics, title)
        Console().print(table if table.row_count else scalar_table(metrics, title))


def scalar_table(metrics: dict, title: str):
    """A two-column rich table of the numbers in ``metrics``, nested keys joined as ``outer/inner``.

    For tasks whose metrics are not energy/forces/stress (docking, Hamiltonians).
    """
    from rich.table import Table

    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")

    def rows(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                rows(f"{prefix}/{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            table.add_row(prefix, f"{value:.4g}")

    rows("", {k: v for k, v in metrics.items() if k != "units"})
    units = metrics.get("units")
    if isinstance(units, str):
        table.caption = f"lengths in {units}"
    elif isinstance(units, dict):
        table.caption = "units: " + ", ".join(f"{k} {v}" for k, v in units.items())
    return table
