"""``eqtool export``: write a run's model (best or last checkpoint, EMA weights) as a model file."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["export"]


def export(
    run_dir: Path = typer.Argument(..., help="A run folder made by `eqtool train`."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default RUN_DIR/model.pt)."),
    last: bool = typer.Option(False, "--last", help="Use the last checkpoint instead of the best one."),
) -> None:
    """Export a trained model (EMA weights when present) to a model file for predict/relax/md.

    Example: eqtool export runs/cu-quick --out cu.pt
    """
    from eqtool.train import export as export_run

    path = export_run(run_dir, out, which="last" if last else "best")
    typer.echo(f"wrote {path}", err=True)
