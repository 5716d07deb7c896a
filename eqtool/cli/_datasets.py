"""Helpers behind ``eqtool data``: input checks, dataset statistics, random splits.

Kept out of :mod:`eqtool.cli.data` so the command file stays thin; :func:`graph_stats` is a plain
library function (a candidate for ``eqtool.data``); the random split itself is
:func:`eqtool.data.datamodule.random_split`, shared with training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from eqtool.errors import EqtoolError

__all__ = [
    "H5_SUFFIXES", "check_input", "is_hdf5", "read_all", "iter_graphs", "graph_stats", "dataset_stats",
    "stats_rows", "check_fractions", "split_indices", "n_systems", "jsonable", "fmt_value",
]

H5_SUFFIXES = (".h5", ".hdf5")


# ----------------------------------------------------------------------------- inputs
def check_input(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise EqtoolError("file not found", source=path)
    if p.is_dir():
        raise EqtoolError("is a folder, expected a file", source=path)
    if not os.access(p, os.R_OK):
        raise EqtoolError("file is not readable (permission denied)", source=path)
    return p


def is_hdf5(path: Path) -> bool:
    import h5py

    return path.suffix.lower() in H5_SUFFIXES or bool(h5py.is_hdf5(path))


def read_all(path: Path, fmt: str | None) -> list:
    """All frames of a structure file (via :func:`eqtool.io.read_structures`); empty is an error."""
    from eqtool.io import read_structures

    graphs = read_structures(str(path), index=":", format=fmt)
    if not graphs:
        raise EqtoolError("no structures found (empty file?)", source=str(path))
    return graphs


def iter_graphs(path: Path, fmt: str | None) -> Iterator:
    """Systems of an eqtool HDF5 dataset (streamed) or of any structure file (read whole)."""
    if fmt is None and is_hdf5(path):
        from eqtool.io.hdf5 import H5Dataset

        with H5Dataset(path) as ds:
            yield from ds
    else:
        yield from read_all(path, fmt)


def fmt_value(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | np.ndarray):
        return ", ".join(fmt_value(v) for v in value)
    return str(value)


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- statistics
def graph_stats(graphs: list) -> dict[str, Any]:
    """In-memory twin of :meth:`eqtool.io.hdf5.H5Dataset.stats` for a list of :class:`AtomGraph`.

    Same keys: ``systems``, ``atoms``, ``periodic``, ``atoms_per_system`` {min, max, mean},
    ``elements`` {symbol: atom count}, ``labels`` {key: {level, systems, fraction}},
    ``energy_per_atom`` {mean, std, min, max} eV/atom and ``force_norm`` {mean, max} eV/Å (absent
    when no system carries them).
    """
    from ase.data import chemical_symbols

    from eqtool.data import keys as K

    nat = np.array([g.n_atoms for g in graphs], dtype=np.int64)
    counts = np.bincount(np.concatenate([g.atomic_numbers for g in graphs]), minlength=119)
    coverage: dict[str, int] = {}
    for g in graphs:
        for key in g.labels:
            coverage[key] = coverage.get(key, 0) + 1
    out: dict[str, Any] = {
        "systems": len(graphs),
        "atoms": int(nat.sum()),
        "periodic": sum(g.is_periodic for g in graphs),
        "atoms_per_system": {"min": int(nat.min()), "max": int(nat.max()), "mean": float(nat.mean())},
        "elements": {chemical_symbols[z]: int(c) for z, c in enumerate(counts) if c},
        "labels": {k: {"level": K.FIELDS[k].level if k in K.FIELDS else "system", "systems": n,
                       "fraction": n / len(graphs)} for k, n in sorted(coverage.items())},
    }
    epa = np.array([float(g.labels[K.ENERGY]) / g.n_atoms for g in graphs if K.ENERGY in g.labels])
    if len(epa):
        out["energy_per_atom"] = {"mean": float(epa.mean()), "std": float(epa.std()),
                                  "min": float(epa.min()), "max": float(epa.max())}
    fn = [np.linalg.norm(np.asarray(g.labels[K.FORCES]).reshape(g.n_atoms, -1), axis=1)
          for g in graphs if K.FORCES in g.labels]
    if fn:
        fn = np.concatenate(fn)
        out["force_norm"] = {"mean": float(fn.mean()), "max": float(fn.max())}
    return out


def dataset_stats(path: Path, fmt: str | None) -> dict[str, Any]:
    if fmt is None and is_hdf5(path):
        from eqtool.io.hdf5 import H5Dataset

        with H5Dataset(path) as ds:
            stats = dict(ds.stats())
    else:
        stats = graph_stats(read_all(path, fmt))
    stats.pop("element_counts", None)  # per-Z array; "elements" says the same by symbol
    return stats


def stats_rows(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows for the ``data info`` table; unknown keys are shown as they are."""
    rows: list[tuple[str, str]] = []
    for key, value in sorted(stats.items(), key=lambda kv: kv[0] == "attrs"):  # file attributes last
        if key == "labels":
            for label, c in value.items():
                rows.append((f"label {label}", f"{c['systems']}/{stats['systems']} systems "
                                               f"({100 * c['fraction']:.0f}%, {c['level']})"))
        elif key == "energy_per_atom":
            rows.append(("energy/atom (eV)", f"mean {fmt_value(value['mean'])} ± {fmt_value(value['std'])}, "
                                             f"min {fmt_value(value['min'])}, max {fmt_value(value['max'])}"))
        elif key == "force_norm":
            rows.append(("|force| (eV/Å)", f"mean {fmt_value(value['mean'])}, max {fmt_value(value['max'])}"))
        elif key == "attrs":
            for name in ("source", "level_of_theory", "eqtool_version", "content_hash"):
                if value.get(name) not in (None, ""):
                    rows.append((name.replace("_", " "), fmt_value(value[name])))
        else:
            rows.append((key.replace("_", " "), fmt_value(value)))
    return rows


# ----------------------------------------------------------------------------- splits
def check_fractions(val: float, test: float) -> None:
    """:func:`eqtool.data.datamodule.check_fractions` for the ``--val``/``--test`` options."""
    from eqtool.data.datamodule import check_fractions as check

    check(val, test, source="--val/--test")


def split_indices(n: int, val: float, test: float, seed: int) -> dict[str, list[int]]:
    """:func:`eqtool.data.datamodule.random_split` as sorted int lists (for the split file): the split
    training would make from the same fractions and seed without a split file."""
    from eqtool.data.datamodule import random_split

    parts = random_split(n, val, test, seed, source="--val/--test")
    return {name: [int(i) for i in idx] for name, idx in parts.items()}


def n_systems(path: Path, fmt: str | None) -> int:
    if fmt is None and is_hdf5(path):
        from eqtool.io.hdf5 import H5Dataset

        with H5Dataset(path) as ds:
            return len(ds)
    return len(read_all(path, fmt))
