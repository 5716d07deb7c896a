"""``eqtool relax``: relax structures (positions, optionally the cell) with a trained potential."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["relax", "EXIT_NOT_CONVERGED"]

EXIT_NOT_CONVERGED = 3


def relax(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...", help="Structure files (any format)."),
    model: list[str] = typer.Option(..., "--model", "-m",
                                    help="Model file or shipped name (e.g. cu-emt); repeat for a committee."),
    out: Path = typer.Option(Path("relaxed.extxyz"), "--out", "-o", help="Output structure file."),
    fmax: float = typer.Option(0.01, "--fmax", help="Force convergence threshold, eV/Å."),
    steps: int = typer.Option(500, "--steps", help="Maximum optimiser steps per structure."),
    optimizer: str = typer.Option("fire", "--optimizer", help="fire, bfgs or lbfgs."),
    cell: bool = typer.Option(False, "--cell", help="Relax the cell too (FrechetCellFilter)."),
    pressure: float = typer.Option(0.0, "--pressure", help="Target pressure for --cell, GPa."),
    traj_dir: Path | None = typer.Option(None, "--traj-dir",
                                         help="Write each structure's steps to DIR/relax_<k>.extxyz."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:1 or auto."),
    dtype: str = typer.Option("float64", "--dtype", help="float64 or float32."),
    threads: int | None = typer.Option(None, "--threads", min=1,
                                       help="CPU threads for torch (small systems: 1 is often fastest)."),
    shard: str | None = typer.Option(None, "--shard", metavar="I/N",
                                     help="Relax shard I of N (0-based) into OUT.shard-I-of-N.extxyz with a "
                                          "manifest; reruns skip finished structures. Default inside a "
                                          "SLURM array job: the array task's shard."),
) -> None:
    """Relax structures with a trained potential until the largest force is below --fmax.

    Fixed atoms (ASE constraints in the input file) stay fixed. Writes the relaxed structures with
    their energy (eV), forces (eV/Å) and stress (eV/Å³) atomically. Exit code 3 if any structure
    did not converge. With --shard (or in a SLURM array job) each structure is appended to the
    shard's output as it finishes; `eqtool data merge` joins the shards (see docs/cluster.md).

    Example: eqtool relax vacancy.extxyz --model cu-emt --fmax 0.01 --out relaxed.extxyz
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from eqtool.calculator import EqCalculator
    from eqtool.errors import EqtoolError
    from eqtool.io import write_structures
    from eqtool.io.atomic import _check_folder
    from eqtool.jobs.shard import resolve_shard
    from eqtool.sim.relax import check_relax_options
    from eqtool.sim.relax import relax as relax_one
    from eqtool.sim.structures import label_of, read_atoms

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    # every check before any work, so bad input leaves nothing behind
    check_relax_options(fmax, steps, optimizer.lower(), cell, pressure)
    part = resolve_shard(shard)
    from eqtool.io import _write_format

    _write_format(out, None)
    if part is not None:
        from eqtool.jobs.run import check_shard_output

        check_shard_output(out)
    _check_folder(out)
    if traj_dir is not None and not traj_dir.is_dir():
        raise EqtoolError("trajectory folder does not exist", source=str(traj_dir))
    calc = EqCalculator(model=model if len(model) > 1 else model[0], device=device, dtype=dtype)
    structures = read_atoms(inputs)
    for atoms in structures:
        calc.check_elements(atoms.get_atomic_numbers(), source=atoms.info["source"])
        if cell and not all(atoms.pbc):
            raise EqtoolError("--cell needs a cell periodic in all three directions",
                              source=atoms.info["source"])

    console = Console(stderr=True)
    if part is not None:
        options = {"fmax": fmax, "steps": steps, "optimizer": optimizer.lower(), "cell": cell,
                   "pressure_gpa": pressure, "dtype": dtype}
        _relax_shard(structures, calc, part, out, inputs, model, options, traj_dir, console)
        return
    progress = Progress(TextColumn("relaxing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=not console.is_terminal, transient=True)
    results = []
    with progress:
        task = progress.add_task("relax", total=len(structures))
        for k, atoms in enumerate(structures):
            results.append(relax_one(atoms, calc, fmax=fmax, steps=steps, optimizer=optimizer.lower(),
                                     cell=cell, pressure_gpa=pressure, trajectory=traj_dir is not None))
            progress.update(task, completed=k + 1)

    graphs = [_result_graph(atoms, res) for atoms, res in zip(structures, results, strict=True)]
    for k, res in enumerate(results):
        if traj_dir is not None:
            _write_traj(traj_dir, k, res)
    write_structures(out, graphs)
    console.print(_table(structures, results, label_of))
    console.print(f"wrote {len(graphs)} structure(s) to {out}", markup=False, highlight=False)
    failed = [k for k, r in enumerate(results) if not r.converged]
    if failed:
        names = ", ".join(label_of(structures[k].info["source"], k) for k in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        console.print(f"not converged within {steps} steps (fmax {fmax} eV/Å): {len(failed)} of "
                      f"{len(results)} structure(s): {names}{more}", markup=False, highlight=False)
        raise typer.Exit(EXIT_NOT_CONVERGED)


def _result_graph(atoms, res):
    """The relaxed structure as written to the output (energy, forces, stress, converged, steps)."""
    from eqtool.io.ase import graph_from_atoms

    g = graph_from_atoms(res.atoms, atoms.info["source"])
    g.info.pop("source", None)
    g.info.update(relax_converged=bool(res.converged), relax_steps=int(res.steps))
    return g


def _write_traj(traj_dir: Path, k: int, res) -> None:
    from eqtool.io import write_structures
    from eqtool.io.ase import graph_from_atoms

    frames = [graph_from_atoms(a, f"relax_{k}@{i}") for i, a in enumerate(res.frames)]
    for f in frames:
        f.info.pop("source", None)
    write_structures(traj_dir / f"relax_{k}.extxyz", frames)


def _relax_shard(structures, calc, part, out, inputs, model, options, traj_dir, console) -> None:
    """Relax one shard, appending each result to the shard output as it finishes (resumable)."""
    from eqtool.io.ase import _extxyz_frame
    from eqtool.jobs.run import prepare_shard
    from eqtool.sim.relax import relax as relax_one

    plan = prepare_shard("relax", out, part, inputs, model, options, [len(a) for a in structures],
                         log=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True))
    with plan.start() as writer:
        for k in plan.todo:
            res = relax_one(structures[k], calc, fmax=options["fmax"], steps=options["steps"],
                            optimizer=options["optimizer"], cell=options["cell"],
                            pressure_gpa=options["pressure_gpa"], trajectory=traj_dir is not None)
            if traj_dir is not None:
                _write_traj(traj_dir, k, res)
            writer.commit([(k, _extxyz_frame(_result_graph(structures[k], res)),
                            {"converged": bool(res.converged)})])
            plan.done[k] = {"converged": bool(res.converged)}
    failed = [k for k in plan.indices if not plan.done[k].get("converged", True)]
    console.print(f"shard {part}: {len(plan.todo)} relaxed now, {len(plan.indices) - len(plan.todo)} "
                  f"skipped (done before); {plan.output}", markup=False, highlight=False, soft_wrap=True)
    if failed:
        console.print(f"not converged within {options['steps']} steps (fmax {options['fmax']} eV/Å): "
                      f"input index {', '.join(map(str, failed[:10]))}", markup=False, highlight=False,
                      soft_wrap=True)
        raise typer.Exit(EXIT_NOT_CONVERGED)


def _table(structures, results, label_of):
    from rich.table import Table

    table = Table(title="relaxation (energies eV, forces eV/Å)", show_header=True)
    for col in ("#", "structure", "atoms", "E initial", "E final", "max force", "steps", "converged"):
        table.add_column(col, justify="left" if col in ("structure", "converged") else "right",
                         no_wrap=col == "converged")
    for k, (atoms, r) in enumerate(zip(structures, results, strict=True)):
        table.add_row(str(k), label_of(atoms.info["source"], k), str(len(atoms)), f"{r.initial_energy:.6f}",
                      f"{r.final_energy:.6f}", f"{r.max_force:.4f}", str(r.steps),
                      "yes" if r.converged else "[bold red]NO[/bold red]")
    return table
