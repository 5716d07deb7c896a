"""``eqtool data``: convert structure files to HDF5, show dataset statistics, make splits.

All library work happens in :mod:`eqtool.io` (reading, HDF5 writing, statistics); this file only
parses options, shows progress and prints tables.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import typer

from eqtool.errors import EqtoolError

__all__ = ["app", "convert", "info", "split", "split_indices"]

H5_SUFFIXES = (".h5", ".hdf5")

app = typer.Typer(
    help="Convert, inspect and split datasets.\n\nExample: eqtool data convert a.extxyz b.xyz train.h5",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# ----------------------------------------------------------------------------- helpers
def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _check_input(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise EqtoolError("file not found", source=path)
    if p.is_dir():
        raise EqtoolError("is a folder, expected a file", source=path)
    if not os.access(p, os.R_OK):
        raise EqtoolError("file is not readable (permission denied)", source=path)
    return p


def _is_hdf5(path: Path) -> bool:
    import h5py

    return path.suffix.lower() in H5_SUFFIXES or bool(h5py.is_hdf5(path))


def _read(path: Path, fmt: str | None) -> list:
    """All frames of a structure file; an empty file is an error."""
    from eqtool.io import read_structures

    graphs = read_structures(str(path), index=":", format=fmt)
    if not graphs:
        raise EqtoolError("no structures found (empty file?)", source=str(path))
    return graphs


def _flatten(d: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and not all(isinstance(k, str) and len(k) <= 2 for k in value):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, dict):  # e.g. element -> count
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | np.ndarray):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- convert
@app.command("convert")
def convert(
    paths: list[str] = typer.Argument(
        ..., metavar="IN... OUT.h5", help="Input structure files, then the output file."
    ),
    fmt: str | None = typer.Option(None, "--format", "-f", help="ASE format of the inputs (default: guess)."),
    source: str = typer.Option("", "--source", help="Provenance stored in the file (default: input names)."),
    level_of_theory: str = typer.Option("", "--level-of-theory", help="e.g. 'PBE/PAW 520 eV'."),
) -> None:
    """Convert structure files (every frame, with labels) into one eqtool HDF5 dataset.

    The output is written atomically: on any bad input nothing is created and an existing
    output is left untouched.

    Example: eqtool data convert md1.extxyz md2.extxyz train.h5 --level-of-theory PBE
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from eqtool.io.hdf5 import H5Writer

    if len(paths) < 2:
        raise EqtoolError("needs at least one input file and an output .h5 file",
                          source="eqtool data convert")
    *inputs, out = paths
    out_path = Path(out)
    if out_path.suffix.lower() not in H5_SUFFIXES:
        raise EqtoolError(f"output must end in {' or '.join(H5_SUFFIXES)} (the last argument is the output)",
                          source=out)
    in_paths = [_check_input(p) for p in inputs]
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
            for graph in _read(path, fmt):
                writer.append(graph)
                n_systems += 1
                n_atoms += graph.n_atoms
                progress.update(task, frames=n_systems)
            progress.advance(task)
    console.print(f"wrote {n_systems} systems ({n_atoms} atoms) from {len(in_paths)} file(s) to {out}")


# ----------------------------------------------------------------------------- info
def _stats(path: Path, fmt: str | None) -> dict[str, Any]:
    if _is_hdf5(path):
        from eqtool.io.hdf5 import H5Dataset

        return dict(H5Dataset(path).stats())
    from eqtool.io.hdf5 import graph_stats

    return dict(graph_stats(_read(path, fmt)))


@app.command("info")
def info(
    file: str = typer.Argument(..., help="An eqtool .h5 dataset or any readable structure file."),
    fmt: str | None = typer.Option(None, "--format", "-f", help="ASE format of a structure file."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON to stdout."),
) -> None:
    """Show dataset statistics: systems, atoms, elements, label coverage, energy/atom and forces.

    Example: eqtool data info train.h5 --json
    """
    stats = _stats(_check_input(file), fmt)
    if as_json:
        print(json.dumps(_jsonable(stats), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=file, show_header=True)
    table.add_column("statistic")
    table.add_column("value", overflow="fold")
    for key, value in _flatten(stats):
        table.add_row(key, _fmt(value))
    Console().print(table)


# ----------------------------------------------------------------------------- split
def split_indices(n: int, val: float, test: float, seed: int) -> dict[str, list[int]]:
    """Random disjoint train/val/test indices covering ``range(n)``, reproducible for ``seed``.

    ``round(test * n)`` systems go to test and ``round(val * n)`` to val; the rest train. Each list
    is sorted.

    Raises:
        EqtoolError: fractions outside ``0 <= val, test`` and ``val + test < 1``, or no training
            systems left.
    """
    if not (0.0 <= val < 1.0 and 0.0 <= test < 1.0 and val + test < 1.0):
        raise EqtoolError(f"fractions must satisfy 0 <= val, test and val + test < 1 (got val={val}, "
                          f"test={test})", source="--val/--test")
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(test * n), round(val * n)
    if n - n_test - n_val < 1:
        raise EqtoolError(f"no training systems left: {n} systems, val={val}, test={test}",
                          source="--val/--test")
    parts = {"train": perm[n_test + n_val:], "val": perm[n_test:n_test + n_val], "test": perm[:n_test]}
    return {name: sorted(int(i) for i in idx) for name, idx in parts.items()}


def _n_systems(path: Path, fmt: str | None) -> int:
    if _is_hdf5(path):
        from eqtool.io.hdf5 import H5Dataset

        return len(H5Dataset(path))
    return len(_read(path, fmt))


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

    path = _check_input(file)
    n = _n_systems(path, fmt)
    parts = split_indices(n, val, test, seed)
    folder = Path(out_dir) if out_dir is not None else path.parent
    if not folder.is_dir():
        raise EqtoolError("output folder does not exist", source=str(folder))
    out = folder / f"{path.name}.split.json"
    record = {"file": path.name, "n_systems": n, "seed": seed, "val_fraction": val, "test_fraction": test,
              **parts}
    with atomic_write(out) as fh:
        json.dump(record, fh, indent=1)
        fh.write("\n")
    sizes = ", ".join(f"{k} {len(v)}" for k, v in parts.items())
    _stderr_console().print(f"wrote {out}: {sizes}")
