"""``eqtool data``: convert structure files to HDF5, show dataset statistics, make splits, merge shards.

All library work happens in :mod:`eqtool.io` (reading, HDF5 writing, statistics); this file only
parses options, shows progress and prints tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from eqtool.cli import _datasets as D
from eqtool.errors import EqtoolError

__all__ = ["app", "convert", "info", "split", "merge"]

app = typer.Typer(
    help="Convert, inspect and split datasets.\n\nExample: eqtool data convert a.extxyz b.xyz train.h5",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# ----------------------------------------------------------------------------- helpers
def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


# ----------------------------------------------------------------------------- convert
@app.command("convert")
def convert(
    inputs: list[str] = typer.Argument(..., metavar="IN", help="Input structure files (any number)."),
    out: str = typer.Argument(..., metavar="OUT.h5", help="Output eqtool HDF5 dataset."),
    fmt: str | None = typer.Option(None, "--format", "-f", help="ASE format of the inputs (default: guess)."),
    source: str = typer.Option("", "--source", help="Provenance stored in the file (default: input names)."),
    level_of_theory: str = typer.Option("", "--level-of-theory", help="e.g. 'PBE/PAW 520 eV'."),
) -> None:
    """Convert structure files (every frame, with labels) into one eqtool HDF5 dataset.

    Inputs may be any format eqtool reads (extxyz, CIF, POSCAR, traj, SDF, ...) and eqtool .h5 files (merged).

    Written atomically: on any bad input nothing is created and an existing OUT.h5 is left untouched.

    Example: eqtool data convert md1.extxyz md2.extxyz train.h5 --level-of-theory PBE
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from eqtool.io.hdf5 import H5Writer

    out_path = Path(out)
    if out_path.suffix.lower() not in D.H5_SUFFIXES:
        raise EqtoolError(f"output must end in {' or '.join(D.H5_SUFFIXES)} "
                          "(the last argument is the output)", source=out)
    in_paths = [D.check_input(p) for p in inputs]
    if any(p.resolve() == out_path.resolve() for p in in_paths):
        raise EqtoolError("output is also an input", source=out)

    console = _stderr_console()
    n_systems = n_atoms = 0
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[frames]} frames"), console=console,
                        disable=not console.is_terminal, transient=True)
    with progress, H5Writer(out_path, source=source or ", ".join(inputs),
                            level_of_theory=level_of_theory) as writer:
        task = progress.add_task("converting", total=len(in_paths), frames=0)
        for path in in_paths:
            progress.update(task, description=f"reading {path.name}")
            for graph in D.iter_graphs(path, fmt):
                writer.append(graph)
                n_systems += 1
                n_atoms += graph.n_atoms
                progress.update(task, frames=n_systems)
            progress.advance(task)
    console.print(f"wrote {n_systems} systems ({n_atoms} atoms) from {len(in_paths)} file(s) to {out}",
                  markup=False, highlight=False)


# ----------------------------------------------------------------------------- info
@app.command("info")
def info(
    file: str = typer.Argument(..., help="An eqtool .h5 dataset or any readable structure file."),
    fmt: str | None = typer.Option(None, "--format", "-f", help="ASE format of a structure file."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON to stdout."),
) -> None:
    """Show dataset statistics: systems, atoms, elements, label coverage, energy/atom and forces.

    Example: eqtool data info train.h5 --json
    """
    stats = D.dataset_stats(D.check_input(file), fmt)
    if as_json:
        print(json.dumps(D.jsonable(stats), indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(file), show_header=True)
    table.add_column("statistic")
    table.add_column("value", overflow="fold")
    for name, value in D.stats_rows(stats):
        table.add_row(Text(name), Text(value))
    Console().print(table)


# ----------------------------------------------------------------------------- split
@app.command("split")
def split(
    file: str = typer.Argument(..., help="An eqtool .h5 dataset or any readable structure file."),
    val: float = typer.Option(0.1, "--val", help="Fraction of systems for validation."),
    test: float = typer.Option(0.1, "--test", help="Fraction of systems for testing."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same split."),
    out_dir: str | None = typer.Option(
        None, "--out-dir", help="Folder for the split file (default: next to FILE)."
    ),
    fmt: str | None = typer.Option(None, "--format", "-f", help="ASE format of a structure file."),
) -> None:
    """Write a reproducible random train/val/test split as FILE.split.json (0-based system indices).

    Example: eqtool data split train.h5 --val 0.1 --test 0.1 --seed 0
    """
    from eqtool.io.atomic import atomic_write

    D.check_fractions(val, test)
    path = D.check_input(file)
    folder = Path(out_dir) if out_dir is not None else path.parent
    if not folder.is_dir():
        raise EqtoolError("output folder does not exist", source=str(folder))
    n = D.n_systems(path, fmt)
    parts = D.split_indices(n, val, test, seed)
    out = folder / f"{path.name}.split.json"
    record = {"file": path.name, "n_systems": n, "seed": seed, "val_fraction": val, "test_fraction": test,
              **parts}
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items())
    with atomic_write(out) as fh:  # one key per line, each index list on one line
        fh.write("{\n" + body + "\n}\n")
    sizes = ", ".join(f"{k} {len(v)}" for k, v in parts.items())
    _stderr_console().print(f"wrote {out}: {sizes}", markup=False, highlight=False)


# ----------------------------------------------------------------------------- merge
@app.command("merge")
def merge(
    out: str = typer.Argument(..., metavar="OUT", help="The merged file (the shard outputs' format)."),
    shard_outputs: list[str] = typer.Argument(..., metavar="SHARD_OUTPUTS...|FOLDER",
                                              help="Shard outputs (or manifests), or a folder of them."),
) -> None:
    """Join the outputs of a sharded relax/predict/md run into one file, in input order.

    Each shard's manifest says which structures it holds. Refuses, naming them, when a structure
    is missing or duplicated or the shards come from different runs; OUT is written atomically.

    Example: eqtool data merge relaxed.extxyz relaxed.shard-*-of-4.extxyz
    """
    from eqtool.jobs.merge import merge_shards

    result = merge_shards(out, shard_outputs)
    _stderr_console().print(f"wrote {result.structures} structures from {result.shards} shard output(s) "
                            f"of eqtool {result.command} to {out}", markup=False, highlight=False,
                            soft_wrap=True)
