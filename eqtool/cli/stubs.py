"""Placeholders for commands that are planned but not built yet.

Each prints one line ``eqtool <cmd> is not available yet (see docs/commands/<cmd>.md)`` to stderr
and exits with code 2, whatever arguments it is given. When a command is built, its file replaces
the placeholder: remove its entry from :data:`NOT_BUILT` and register the real command in
:func:`eqtool.cli.main.build_app`.
"""

from __future__ import annotations

import sys

import typer

__all__ = ["NOT_BUILT", "register", "not_available_message"]

# name -> (one-line summary, example invocation)
NOT_BUILT: dict[str, tuple[str, str]] = {
    "dock": ("Dock ligands into a protein pocket with a trained docking model.",
             "eqtool dock model.pt protein.pdb ligands.sdf poses.sdf"),
}


def not_available_message(name: str) -> str:
    return f"eqtool {name} is not available yet (see docs/commands/{name}.md)"


def register(app: typer.Typer, name: str) -> None:
    """Add the placeholder command ``name`` (a key of :data:`NOT_BUILT`) to ``app``."""
    summary, example = NOT_BUILT[name]

    def placeholder(ctx: typer.Context) -> None:
        print(not_available_message(name), file=sys.stderr, flush=True)
        raise typer.Exit(2)

    placeholder.__doc__ = f"{summary} (not available yet)\n\nExample: {example}"
    app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        placeholder
    )
