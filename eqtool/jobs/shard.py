"""Which structures a shard of a batch job works on.

A shard is ``I/N`` (0-based ``I``, ``0 <= I < N``). Structures are assigned to shards by a
deterministic greedy balance of atom counts (largest first, ties by input index, each to the
shard with the fewest atoms so far, ties to the lowest shard), so the N shards of a job hold
about the same work and together every structure exactly once. Inside a shard, structures are
processed in input order.

Inside a SLURM array job without ``--shard``, the shard is ``(SLURM_ARRAY_TASK_ID -
SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP`` of ``SLURM_ARRAY_TASK_COUNT``.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from eqtool.errors import EqtoolError

__all__ = ["Shard", "parse_shard", "shard_from_env", "resolve_shard", "assign_shards", "shard_indices",
           "shard_path"]


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based); ``origin`` says where it came from (for the log)."""

    index: int
    count: int
    origin: str = "--shard"

    @property
    def tag(self) -> str:
        """``shard-I-of-N``, used in output file names."""
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, source: str = "--shard") -> Shard:
    """``"I/N"`` -> :class:`Shard`; EqtoolError unless ``0 <= I < N``."""
    head, sep, tail = str(text).strip().partition("/")
    try:
        if not sep:
            raise ValueError
        index, count = int(head), int(tail)
    except ValueError:
        raise EqtoolError(f"expected I/N (shard I of N, 0-based), got {text!r}", source=source) from None
    if count < 1:
        raise EqtoolError(f"the number of shards must be >= 1, got {text!r}", source=source)
    if not 0 <= index < count:
        raise EqtoolError(f"shard index must be 0..{count - 1} (0-based), got {text!r}", source=source)
    return Shard(index, count, origin=source)


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard of a SLURM array task, or None outside an array job."""
    env = os.environ if env is None else env
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    try:
        task = int(env["SLURM_ARRAY_TASK_ID"])
        count = int(env["SLURM_ARRAY_TASK_COUNT"])
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
    except (KeyError, ValueError):
        raise EqtoolError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT/MIN are missing or not "
                          "integers; pass --shard I/N", source="SLURM array") from None
    offset = task - first
    if step < 1 or offset % step:
        raise EqtoolError(f"array task {task} is not on the array's grid (min {first}, step {step}); "
                          "pass --shard I/N", source="SLURM array")
    return parse_shard(f"{offset // step}/{count}", source="SLURM array")


def resolve_shard(option: str | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """``--shard`` when given, else the SLURM array task's shard, else None (not sharded)."""
    return parse_shard(option) if option is not None else shard_from_env(env)


def assign_shards(n_atoms: Sequence[int], count: int) -> list[list[int]]:
    """Indices of each of ``count`` shards, balanced by atom count (see the module docstring).

    Args:
        n_atoms: atoms of each structure, in input order.
        count: number of shards.

    Returns:
        ``count`` sorted index lists that together hold ``range(len(n_atoms))`` exactly once.
    """
    heap = [(0, s) for s in range(count)]  # (atoms so far, shard)
    out: list[list[int]] = [[] for _ in range(count)]
    for k in sorted(range(len(n_atoms)), key=lambda k: (-int(n_atoms[k]), k)):
        load, s = heapq.heappop(heap)
        out[s].append(k)
        heapq.heappush(heap, (load + int(n_atoms[k]), s))
    return [sorted(ix) for ix in out]


def shard_indices(n_atoms: Sequence[int], shard: Shard) -> list[int]:
    """Sorted input indices of ``shard``."""
    return assign_shards(n_atoms, shard.count)[shard.index]


def shard_path(out: str | os.PathLike, shard: Shard) -> Path:
    """Output of a shard: ``relaxed.extxyz`` -> ``relaxed.shard-1-of-4.extxyz``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.{shard.tag}{out.suffix}")
