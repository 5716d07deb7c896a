"""``eqtool predict``: energies, forces and stress of structures with a trained potential."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["predict"]


def _read(paths: list[str]):
    from eqtool.io import read_structures

    graphs = []
    for p in paths:
        if Path(p).suffix.lower() in (".h5", ".hdf5"):
            from eqtool.io.hdf5 import read_h5

            graphs.extend(read_h5(p))
        else:
            graphs.extend(read_structures(p))
    return graphs


def predict(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...", help="Structure files (any format, .h5)."),
    model: str = typer.Option(..., "--model", "-m", help="Model file or shipped model name (e.g. cu-emt)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output structure file, e.g. out.extxyz."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Structures per forward pass."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 or auto."),
    dtype: str | None = typer.Option(None, "--dtype", help="float32 or float64 (default: the model's)."),
) -> None:
    """Predict energy (eV), forces (eV/Å), stress (eV/Å³, periodic) and write them with the structures.

    Reference labels in the inputs are replaced in the output; their errors are printed.

    Example: eqtool predict in.extxyz --model cu-emt --out predicted.extxyz
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from eqtool.cli.train import metrics_table
    from eqtool.io import write_structures
    from eqtool.models.files import load_model
    from eqtool.tasks.inference import predict_graphs, resolve_device
    from eqtool.tasks.report import error_metrics

    net = load_model(model, device=resolve_device(device), dtype=dtype)
    graphs = _read(inputs)
    console = Console(stderr=True)
    progress = Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), console=console,
                        disable=not console.is_terminal, transient=True)
    with progress:
        task = progress.add_task("predict", total=len(graphs))
        predicted = predict_graphs(net, graphs, batch_size,
                                   progress=lambda n: progress.update(task, completed=n))
    write_structures(out, predicted)
    console.print(f"wrote {len(predicted)} structures to {out}", markup=False, highlight=False)
    arrays = _reference_arrays(graphs, predicted)
    if arrays:
        console.print(metrics_table(error_metrics(arrays), "errors against the input labels"))


def _reference_arrays(refs, preds) -> dict:
    """Pred/ref arrays for the labels every input carries (energy per atom, forces, stress)."""
    import numpy as np

    out = {}
    if all("energy" in g.labels for g in refs):
        out["energy"] = {"ref": np.array([float(g.labels["energy"]) / g.n_atoms for g in refs]),
                         "pred": np.array([float(p.labels["energy"]) / p.n_atoms for p in preds])}
    if all("forces" in g.labels for g in refs):
        out["forces"] = {"ref": np.concatenate([g.labels["forces"] for g in refs]),
                         "pred": np.concatenate([p.labels["forces"] for p in preds])}
    pairs = [(g, p) for g, p in zip(refs, preds, strict=True)
             if "stress" in g.labels and "stress" in p.labels]
    if pairs:
        out["stress"] = {"ref": np.stack([g.labels["stress"] for g, _ in pairs]),
                         "pred": np.stack([p.labels["stress"] for _, p in pairs])}
    return out
