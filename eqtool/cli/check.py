"""``eqtool check``: run the shipped model checks (equivariance, forces, batching) on a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

__all__ = ["check", "default_structures"]


def default_structures(atomic_numbers, seed: int = 0) -> list:
    """Two small rattled systems over the model's elements: a periodic fcc cell and a cluster.

    Atoms sit on an fcc lattice (a = 3.6 Å, nearest neighbours 2.55 Å) displaced by up to 0.1 Å,
    elements cycled through ``atomic_numbers``.
    """
    from eqtool.data.graph import AtomGraph

    rng = np.random.default_rng(seed)
    zs = [int(z) for z in atomic_numbers]
    a = 3.6
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]) * a
    cell = np.eye(3) * a
    bulk_pos = basis + rng.uniform(-0.1, 0.1, size=basis.shape)
    bulk = AtomGraph(bulk_pos, [zs[i % len(zs)] for i in range(4)], cell=cell, pbc=True,
                     source="check:bulk@0")
    cluster_pos = np.concatenate([basis, basis[1:] + [a / 2, 0, 0]])  # 7 atoms
    cluster_pos = cluster_pos + rng.uniform(-0.1, 0.1, size=cluster_pos.shape)
    cluster = AtomGraph(cluster_pos, [zs[(i + 1) % len(zs)] for i in range(7)], source="check:cluster@0")
    return [bulk, cluster]


def check(
    model: str = typer.Option(..., "--model", "-m", help="Model file or shipped model name."),
    structures: Path | None = typer.Option(None, "--structures", "-s",
                                           help="Structures to check on (default: small built-in ones)."),
    dtype: str = typer.Option("float64", "--dtype", help="float32 or float64."),
) -> None:
    """Check a model: rotation/translation/permutation invariance, periodic images, batch == single,
    finite-difference forces and stress. Exits 1 if any check fails.

    Example: eqtool check --model cu-emt
    """
    import torch
    from rich.console import Console
    from rich.table import Table

    from eqtool.errors import EqtoolError
    from eqtool.models.files import load_model
    from eqtool.testing import run_all_checks

    if dtype not in ("float32", "float64"):
        raise EqtoolError(f"dtype must be float32 or float64, got {dtype!r}", source="--dtype")
    net = load_model(model, dtype=dtype, kind="potential")
    if structures is not None:
        from eqtool.io import read_structures

        graphs = read_structures(str(structures))
    else:
        graphs = default_structures(net.atomic_numbers.tolist())
    results = run_all_checks(net, graphs, getattr(torch, dtype))
    table = Table(title=f"eqtool check {model} ({dtype})")
    for col in ("check", "error", "tolerance", "result"):
        table.add_column(col, justify="left" if col in ("check", "result") else "right")
    for r in results:
        verdict = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        table.add_row(r.name, f"{r.error:.3g}", f"{r.tol:.3g}", verdict)
    Console().print(table)
    if not all(r.passed for r in results):
        raise typer.Exit(1)
