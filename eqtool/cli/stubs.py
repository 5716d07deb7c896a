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
    "train": ("Train a model (potential, Hamiltonian, generative, docking) from a YAML recipe.",
              "eqtool train recipes/potential.yaml --set trainer.max_epochs=100"),
    "relax": ("Relax structures (positions, optionally the cell) with a trained potential.",
              "eqtool relax model.pt in.extxyz out.extxyz --fmax 0.05"),
    "md": ("Run molecular dynamics (NVE/NVT/NPT) with a trained potential.",
           "eqtool md model.pt start.extxyz traj.h5 --ensemble nvt --temperature 300 --steps 10000"),
    "generate": ("Generate new structures with a trained diffusion model.",
                 "eqtool generate model.pt out.extxyz --num 100"),
    "dock": ("Dock ligands into a protein pocket with a trained docking model.",
             "eqtool dock model.pt protein.pdb ligands.sdf poses.sdf"),
    "predict": ("Predict energies, forces, stress (or other trained targets) for structures.",
                "eqtool predict model.pt in.extxyz out.extxyz"),
    "check": ("Check a model: equivariance, finite-difference forces, batch consistency.",
              "eqtool check model.pt"),
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
