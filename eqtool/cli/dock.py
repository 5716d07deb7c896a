"""``eqtool dock``: place ligands in a protein pocket (being built)."""

from __future__ import annotations

import typer

from eqtool.errors import EqtoolError

__all__ = ["dock"]


def dock(ctx: typer.Context) -> None:
    """Dock ligands into a protein pocket (being built).

    Example: eqtool dock --receptor protein.pdb --ligand ligands.sdf --out poses.sdf
    """
    raise EqtoolError("not available yet (see docs/commands/dock.md)", source="eqtool dock")
