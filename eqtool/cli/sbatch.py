"""``eqtool sbatch``: write and submit a SLURM array job for an eqtool command (being built)."""

from __future__ import annotations

import typer

from eqtool.errors import EqtoolError

__all__ = ["sbatch", "CONTEXT"]

# click context settings of the command (it passes an eqtool command line through)
CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def sbatch(ctx: typer.Context) -> None:
    """Submit an eqtool command as a SLURM array job (being built).

    Example: eqtool sbatch --array 4 --dry-run -- relax structures.extxyz --model cu-emt --out relaxed.extxyz
    """
    raise EqtoolError("not available yet", source="eqtool sbatch")
