"""Assemble the outputs of a sharded job into one file in input order.

Each shard output's manifest (see :mod:`eqtool.jobs.manifest`) says which input indices it holds
and where each result lies in the file, so merging copies byte ranges: the merged file is
exactly what one process would have written. Refuses (naming what) when the shards come from
different runs, a structure is missing or duplicated, or an output is shorter than its manifest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eqtool.errors import EqtoolError
from eqtool.jobs.manifest import MANIFEST_SUFFIX, manifest_path, read_manifest

__all__ = ["MergeResult", "find_shard_outputs", "merge_shards"]


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_shards` wrote: ``structures`` results from ``shards`` shard outputs."""

    out: Path
    structures: int
    shards: int
    command: str


def _short(indices: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def find_shard_outputs(items: Sequence[str | os.PathLike]) -> list[Path]:
    """Shard outputs named by ``items``: files (outputs or manifests) or folders (every manifest in them)."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            manifests = sorted(path.glob(f"*{MANIFEST_SUFFIX}"))
            if not manifests:
                raise EqtoolError(f"no shard manifests (*{MANIFEST_SUFFIX}) in this folder", source=str(path))
            found.extend(m.with_name(m.name[: -len(MANIFEST_SUFFIX)]) for m in manifests)
        elif path.name.endswith(MANIFEST_SUFFIX):
            found.append(path.with_name(path.name[: -len(MANIFEST_SUFFIX)]))
        else:
            if not path.exists() and not manifest_path(path).exists():
                raise EqtoolError("file not found", source=str(path))
            found.append(path)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise EqtoolError("no shard outputs given", source="SHARD_OUTPUTS")
    return unique


def merge_shards(out: str | os.PathLike, shard_outputs: Sequence[str | os.PathLike]) -> MergeResult:
    """Write the results of every structure, in input order, to ``out`` (atomically).

    Args:
        out: the merged file; same format as the shard outputs (suffix checked).
        shard_outputs: shard result files, their manifests, or folders holding them.

    Raises:
        EqtoolError: no manifest, shards of different runs, a structure missing (names the
            indices and the absent shards) or in two shards, an output shorter than its
            manifest, ``out`` among the inputs or of another format.
    """
    from eqtool.io.atomic import _check_folder, atomic_write

    out = Path(out)
    outputs = find_shard_outputs(shard_outputs)
    _check_folder(out)
    if out.resolve() in outputs:
        raise EqtoolError("the merged output is also a shard output", source=str(out))
    first = None
    spans: dict[int, tuple[Path, int, int]] = {}
    seen_shards: set[int] = set()
    for path in outputs:
        man = manifest_path(path)
        header, entries = read_manifest(man)
        if first is None:
            first = (header, man)
        key = ("command", "n_structures", "hashes")
        if any(header.get(k) != first[0].get(k) for k in key) or header["shard"][1] != first[0]["shard"][1]:
            raise EqtoolError(f"comes from another run than {first[1].name} (other command, inputs, model, "
                              "options or shard count); merge the shards of one run", source=str(man))
        if path.suffix.lower() != out.suffix.lower():
            raise EqtoolError(f"the merged file must have the shard outputs' format ({path.suffix})",
                              source=str(out))
        seen_shards.add(int(header["shard"][0]))
        size = path.stat().st_size if path.is_file() else -1
        for e in entries:
            k = int(e["index"])
            if k in spans:
                raise EqtoolError(f"structure {k} is in two shard outputs: {spans[k][0].name} and "
                                  f"{path.name}", source=str(path))
            if int(e["end"]) > size:
                raise EqtoolError("is shorter than its manifest says (edited or truncated?)",
                                  source=str(path))
            spans[k] = (path, int(e["start"]), int(e["end"]))
    header = first[0]
    n, count = int(header["n_structures"]), int(header["shard"][1])
    missing = [k for k in range(n) if k not in spans]
    if missing:
        absent = sorted(set(range(count)) - seen_shards)
        hint = (f"; shard(s) {', '.join(f'{s}/{count}' for s in absent)} not given" if absent
                else "; rerun the unfinished shard(s) to complete them")
        raise EqtoolError(f"{len(missing)} of {n} structures missing: input index {_short(missing)}{hint}",
                          source=str(out))
    handles: dict[Path, object] = {}
    try:
        with atomic_write(out, "wb") as dst:
            for k in range(n):
                path, start, end = spans[k]
                fh = handles.get(path) or handles.setdefault(path, open(path, "rb"))
                fh.seek(start)
                dst.write(fh.read(end - start))
    finally:
        for fh in handles.values():
            fh.close()
    return MergeResult(out=out, structures=n, shards=len(outputs), command=str(header["command"]))
