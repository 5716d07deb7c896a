"""``eqtool predict``: energies, forces, stress with a potential; Fock matrices with a Hamiltonian model."""

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
    shard: str | None = typer.Option(None, "--shard", metavar="I/N",
                                     help="Predict shard I of N (0-based) into OUT.shard-I-of-N.extxyz with "
                                          "a manifest; reruns skip finished structures. Default inside a "
                                          "SLURM array job: the array task's shard."),
    scf: bool = typer.Option(False, "--scf", help="Hamiltonian models: also run PySCF from the predicted "
                             "density and from minao, and report SCF cycles."),
    charge: int = typer.Option(0, "--charge", help="Hamiltonian models: total charge of every molecule."),
) -> None:
    """Predict energy, forces, stress (potentials) or Fock matrices (Hamiltonian models) for structures.

    With a potential: energy (eV), forces (eV/Å) and stress (eV/Å³, periodic) are written with the
    structures; reference labels in the inputs are replaced and their errors are printed. With
    --shard (or in a SLURM array job) results are appended per batch to the shard's output;
    `eqtool data merge` joins the shards (see docs/cluster.md).

    With a Hamiltonian model (e.g. water-ethanol-svp) OUT is an .h5 file with the predicted Fock
    matrix (PySCF AO order, Hartree), overlap, orbital energies and HOMO/LUMO/gap per molecule;
    --scf runs PySCF B3LYP from the predicted density and reports the cycles against minao.

    Example: eqtool predict in.extxyz --model cu-emt --out predicted.extxyz
    """
    from eqtool.errors import EqtoolError
    from eqtool.jobs.shard import resolve_shard
    from eqtool.models.files import KINDS, model_kind, read_model_file

    kind = model_kind(read_model_file(model))
    if kind == "hamiltonian":
        if shard is not None:
            raise EqtoolError("--shard is for potential models (relax/predict/md of structures)", "--shard")
        if out.suffix.lower() not in (".h5", ".hdf5"):
            raise EqtoolError("a Hamiltonian model writes an HDF5 file: give --out NAME.h5", str(out))
        _predict_hamiltonian(inputs, model, out, device, dtype, scf, charge)
        return
    if kind != "potential":
        raise EqtoolError(f"this is a {KINDS.get(kind, kind + ' model')}; eqtool predict needs a potential "
                          "or a Hamiltonian model", source=str(model))
    if scf:
        raise EqtoolError("--scf is for Hamiltonian models", "--scf")
    part = resolve_shard(shard)
    if part is not None:
        from eqtool.jobs.run import check_shard_output

        check_shard_output(out)
    _predict_potential(inputs, model, out, batch_size, device, dtype, part)


def _predict_hamiltonian(inputs: list[str], model: str, out: Path, device: str, dtype: str | None,
                         scf: bool, charge: int) -> None:
    from rich.console import Console

    from eqtool.cli._predict_hamiltonian import predict_hamiltonian
    from eqtool.io.atomic import _check_folder
    from eqtool.models.files import load_model
    from eqtool.tasks.inference import resolve_device

    _check_folder(out)
    net = load_model(model, device=resolve_device(device), dtype=dtype or "float64")
    predict_hamiltonian(_read(inputs), net, out, scf, Console(), charge=charge)


def _predict_potential(inputs: list[str], model: str, out: Path, batch_size: int, device: str,
                       dtype: str | None, part) -> None:
    """``eqtool predict`` for an energy model (the whole input, or shard ``part``)."""
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
    if part is not None:
        _predict_shard(net, graphs, part, out, inputs, model, batch_size, dtype, console)
        return
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


def _predict_shard(net, graphs, part, out, inputs, model, batch_size, dtype, console) -> None:
    """Predict one shard, appending every batch's results (with their manifest lines) as it finishes."""
    from eqtool.io.ase import _extxyz_frame
    from eqtool.jobs.run import prepare_shard
    from eqtool.tasks.inference import predict_graphs

    options = {"dtype": dtype or str(next(net.parameters()).dtype).replace("torch.", "")}
    plan = prepare_shard("predict", out, part, inputs, [model], options, [g.n_atoms for g in graphs],
                         log=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True))
    with plan.start() as writer:
        for b in range(0, len(plan.todo), batch_size):
            chunk = plan.todo[b:b + batch_size]
            predicted = predict_graphs(net, [graphs[k] for k in chunk], batch_size)
            writer.commit([(k, _extxyz_frame(p), {}) for k, p in zip(chunk, predicted, strict=True)])
    console.print(f"shard {part}: {len(plan.todo)} predicted now, {len(plan.done)} skipped (done before); "
                  f"{plan.output}", markup=False, highlight=False, soft_wrap=True)


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
