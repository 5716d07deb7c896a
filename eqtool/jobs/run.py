"""Glue between the batch commands (relax, predict, md) and shards: plan, log line, format check."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eqtool.errors import EqtoolError
from eqtool.jobs.manifest import ShardPlan, fingerprint, plan_shard
from eqtool.jobs.shard import Shard, shard_indices, shard_path

__all__ = ["APPENDABLE", "check_shard_output", "prepare_shard"]

# formats a shard can append to one structure at a time (and merge by byte ranges)
APPENDABLE = (".extxyz", ".xyz")


def check_shard_output(out: str | os.PathLike, option: str = "--out") -> None:
    """EqtoolError unless ``out`` is an extxyz file (the format shards append to)."""
    if Path(out).suffix.lower() not in APPENDABLE:
        raise EqtoolError(f"a sharded run writes extxyz; give an {' or '.join(APPENDABLE)} output "
                          f"(convert the merged file afterwards)", source=f"{option} {out}")


def prepare_shard(command: str, out: str | os.PathLike, shard: Shard, inputs: Sequence[str],
                  models: Sequence[str], options: dict[str, Any], n_atoms: Sequence[int],
                  log: Callable[[str], None] = print) -> ShardPlan:
    """Plan ``shard`` of a ``command`` run over structures with ``n_atoms`` atoms; writes nothing.

    The shard's output is :func:`~eqtool.jobs.shard.shard_path` of ``out``. Logs one line: the
    shard, where it came from, and how many structures are done and to do.
    """
    indices = shard_indices(n_atoms, shard)
    prints = fingerprint(command, inputs, models, options)
    record = {"inputs": [str(p) for p in inputs], "models": [str(m) for m in models], "options": options}
    plan = plan_shard(shard_path(out, shard), shard, prints, len(n_atoms), indices, record)
    origin = "" if shard.origin == "--shard" else f" (from the {shard.origin})"
    again = f", {len(plan.done)} done already" if plan.done else ""
    log(f"shard {shard}{origin}: {len(indices)} of {len(n_atoms)} structures, "
        f"{sum(int(n_atoms[k]) for k in indices)} atoms{again}; writing {plan.output}")
    return plan
