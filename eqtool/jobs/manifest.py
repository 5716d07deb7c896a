"""Per-shard manifests: which structures a shard has finished, and with what inputs, model and options.

A shard writes two files side by side::

    relaxed.shard-1-of-4.extxyz                    results, appended one structure at a time
    relaxed.shard-1-of-4.extxyz.manifest.jsonl     JSON lines: a header, then one line per finished structure

The header holds the command, the shard, the number of structures, this shard's input indices
and sha256 hashes of the input files, the model file(s) and the result-changing options. Each
later line is ``{"index": k, "start": byte, "end": byte, ...}``: structure ``k``'s result is
``output[start:end]``. A result is written and flushed to the output *before* its manifest line,
so after a kill the manifest never claims more than the output holds; a rerun truncates the
output to the last recorded ``end`` (dropping the structure that was in flight) and continues.
A rerun whose hashes differ refuses instead of mixing results.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eqtool.errors import EqtoolError
from eqtool.jobs.shard import Shard

__all__ = ["MANIFEST_SUFFIX", "FORMAT", "manifest_path", "hash_inputs", "hash_models", "hash_options",
           "fingerprint", "read_manifest", "ShardPlan", "ShardWriter", "plan_shard"]

MANIFEST_SUFFIX = ".manifest.jsonl"
FORMAT = "eqtool-shard-manifest"
VERSION = 1
_WHAT = {"command": "another command", "n_structures": "another number of input structures",
         "inputs": "other input files", "model": "another model", "options": "other options",
         "shard": "another shard", "indices": "another assignment of structures to shards"}


def manifest_path(output: str | os.PathLike) -> Path:
    """``out.shard-0-of-4.extxyz`` -> ``out.shard-0-of-4.extxyz.manifest.jsonl``."""
    output = Path(output)
    return output.with_name(output.name + MANIFEST_SUFFIX)


def _sha(parts: Iterable[bytes]) -> str:
    """sha256 over length-prefixed parts (so ``["ab", "c"]`` and ``["a", "bc"]`` differ)."""
    h = hashlib.sha256()
    for c in parts:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h.hexdigest()


def _file_digest(path: Path) -> bytes:
    """sha256 of a file's contents, read in 1 MiB blocks (datasets can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.digest()


def hash_inputs(inputs: Sequence[str]) -> str:
    """sha256 over the contents of the input files in order (a non-file input, e.g. SMILES, by its text)."""
    return _sha(_file_digest(Path(p)) if Path(p).is_file() else f"text:{p}".encode() for p in inputs)


def hash_models(models: Sequence[str]) -> str:
    """sha256 over the model files (shipped names resolved to their files), in order."""
    from eqtool.models.files import _resolve

    return _sha(_file_digest(_resolve(m)) for m in models)


def hash_options(options: dict[str, Any]) -> str:
    """sha256 of the options as sorted JSON."""
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(command: str, inputs: Sequence[str], models: Sequence[str], options: dict[str, Any]
                ) -> dict[str, str]:
    """``{"command", "inputs", "model", "options"}``: what a manifest is checked against."""
    return {"command": command, "inputs": hash_inputs(inputs), "model": hash_models(models),
            "options": hash_options(options)}


def read_manifest(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(header, entries)`` of a manifest; an incomplete last line (a killed writer) is ignored.

    Raises:
        EqtoolError: missing file, not an eqtool manifest, a garbled line before the last.
    """
    path = Path(path)
    if not path.is_file():
        raise EqtoolError("manifest not found (not a shard output, or its manifest was removed)",
                          source=str(path))
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is an unfinished write
    rows = []
    for n, line in enumerate(complete, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise EqtoolError("garbled manifest line", source=str(path), where=f"line {n}") from None
    if not rows or not isinstance(rows[0], dict) or rows[0].get("format") != FORMAT:
        raise EqtoolError("not an eqtool shard manifest", source=str(path))
    if rows[0].get("version", 0) > VERSION:
        raise EqtoolError(f"manifest version {rows[0]['version']} is newer than this eqtool supports",
                          source=str(path))
    return rows[0], rows[1:]


@dataclass
class ShardPlan:
    """A checked plan for one shard: nothing written yet. :meth:`start` opens the files.

    Attributes:
        output, manifest: the shard's result file and its manifest.
        header: the manifest header this run writes (or found).
        indices: this shard's input indices (sorted).
        done: entries of the indices already finished (from an earlier run), by index.
        todo: indices still to do, in input order.
        resume_at: output size to truncate to before appending (bytes).
    """

    output: Path
    manifest: Path
    header: dict[str, Any]
    indices: list[int]
    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    todo: list[int] = field(default_factory=list)
    resume_at: int = 0
    exists: bool = False
    trim_manifest: int | None = None

    def start(self) -> ShardWriter:
        """Write the header (new run) or trim a killed run's tail; return the appending writer."""
        if not self.exists:
            from eqtool.io.atomic import atomic_write

            with atomic_write(self.manifest, "w", newline="\n") as fh:
                fh.write(json.dumps(self.header) + "\n")
            self.output.write_bytes(b"")
        else:
            if self.trim_manifest is not None:
                with open(self.manifest, "r+b") as fh:
                    fh.truncate(self.trim_manifest)
            with open(self.output, "ab") as fh:  # creates it if a kill came before the first result
                fh.truncate(self.resume_at)
        return ShardWriter(self.output, self.manifest)


class ShardWriter:
    """Appends results and manifest lines; every :meth:`commit` is flushed and fsynced."""

    def __init__(self, output: Path, manifest: Path):
        self._out = open(output, "ab")
        self._man = open(manifest, "a", encoding="utf-8", newline="\n")

    def commit(self, items: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
        """Append ``(index, text, extra)`` results, then their manifest lines (in that order)."""
        spans = []
        for index, text, extra in items:
            start = self._out.tell()
            self._out.write(text.encode("utf-8"))
            spans.append({"index": int(index), "start": start, "end": self._out.tell(), **extra})
        self._out.flush()
        os.fsync(self._out.fileno())
        for span in spans:
            self._man.write(json.dumps(span) + "\n")
        self._man.flush()
        os.fsync(self._man.fileno())

    def close(self) -> None:
        self._out.close()
        self._man.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def plan_shard(output: str | os.PathLike, shard: Shard, prints: dict[str, str], n_structures: int,
               indices: Sequence[int], record: dict[str, Any] | None = None) -> ShardPlan:
    """Check a shard's files against this run and say what is left to do; writes nothing.

    Args:
        output: the shard's result file (see :func:`eqtool.jobs.shard.shard_path`).
        shard: which shard.
        prints: :func:`fingerprint` of this run.
        n_structures: structures in the whole job.
        indices: this shard's input indices.
        record: extra header fields for people reading it (inputs, model names, options).

    Raises:
        EqtoolError: an existing manifest from another command, inputs, model, options or
            shard; an output without a manifest; an output shorter than its manifest says.
    """
    output = Path(output)
    manifest = manifest_path(output)
    header = {"format": FORMAT, "version": VERSION, "command": prints["command"],
              "shard": [shard.index, shard.count], "n_structures": int(n_structures),
              "indices": [int(i) for i in indices], "output": output.name,
              "hashes": {k: prints[k] for k in ("inputs", "model", "options")}, **(record or {})}
    plan = ShardPlan(output, manifest, header, [int(i) for i in indices])
    if not manifest.exists():
        if output.exists():
            raise EqtoolError("exists without a manifest (not from this shard run); remove it or choose "
                              "another --out", source=str(output))
        plan.todo = list(plan.indices)
        return plan
    old, entries = read_manifest(manifest)
    for key in ("command", "n_structures", "shard", "indices"):
        if old.get(key) != header[key]:
            raise _mismatch(manifest, key)
    for key in ("inputs", "model", "options"):
        if old.get("hashes", {}).get(key) != prints[key]:
            raise _mismatch(manifest, key)
    plan.exists = True
    raw = manifest.read_bytes()
    if not raw.endswith(b"\n"):
        plan.trim_manifest = raw.rfind(b"\n") + 1
    if entries:
        plan.resume_at = int(entries[-1]["end"])
    size = output.stat().st_size if output.is_file() else (0 if not entries else -1)
    if size < plan.resume_at:
        raise EqtoolError(f"is shorter than its manifest says ({max(size, 0)} < {plan.resume_at} bytes); "
                          f"remove it and {manifest.name} to start this shard again", source=str(output))
    plan.done = {int(e["index"]): e for e in entries}
    plan.todo = [k for k in plan.indices if k not in plan.done]
    return plan


def _mismatch(manifest: Path, key: str) -> EqtoolError:
    return EqtoolError(f"manifest was made with {_WHAT[key]} than this run; refusing to mix results "
                       "(remove the shard's output and manifest, or choose another --out)",
                       source=str(manifest))
