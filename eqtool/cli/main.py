"""The ``eqtool`` Typer app and the console-script entry point :func:`main`.

Adding a command: write ``eqtool/cli/<name>.py`` with a function (or a sub-``typer.Typer``) and
register it with one line in :func:`build_app`.

Exit codes: 0 success, 1 internal error (a bug: rerun with ``--debug``), 2 user-fixable error
(bad input, bad option, command not available yet), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from eqtool import __version__
from eqtool.cli import check, data, dock, export, generate, info, md, predict, relax, sbatch, train
from eqtool.errors import EqtoolError

__all__ = ["build_app", "main"]

EXIT_USER = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPT = 130


def _version(value: bool) -> None:
    if value:
        typer.echo(f"eqtool {__version__}")
        raise typer.Exit()


def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the eqtool version and exit."
    ),
) -> None:
    """E(3)-equivariant machine learning for molecules and materials.

    Example: eqtool data convert train.extxyz train.h5
    """
    # --debug is read by main() before the app runs (see _wants_debug); nothing to store here.


# Order of `eqtool --help`; commands not listed here follow in registration order.
COMMAND_ORDER = ("train", "export", "relax", "md", "generate", "dock", "predict", "data", "sbatch", "info",
                 "check")


class _OrderedGroup(typer.core.TyperGroup):
    """Lists commands in :data:`COMMAND_ORDER` (Typer would put sub-apps like ``data`` last)."""

    def list_commands(self, ctx):
        names = list(self.commands)
        return sorted(names, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(names) + 99)


def build_app() -> typer.Typer:
    """Return a fresh ``eqtool`` app (no module-level state; tests build their own)."""
    app = typer.Typer(
        name="eqtool",
        cls=_OrderedGroup,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    app.add_typer(data.app, name="data")
    app.command("info")(info.info)
    app.command("train")(train.train)
    app.command("export")(export.export)
    app.command("predict")(predict.predict)
    app.command("check")(check.check)
    app.command("generate")(generate.generate)
    app.command("relax")(relax.relax)
    app.command("md")(md.md)
    app.command("dock")(dock.dock)
    app.command("sbatch", context_settings=sbatch.CONTEXT)(sbatch.sbatch)
    return app


def _wants_debug(args: Sequence[str]) -> bool:
    """True if ``--debug`` appears among the global options (before the subcommand)."""
    for arg in args:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False
    return False


def _oneline(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI (console script ``eqtool``); always ends with ``SystemExit``.

    Args:
        argv: arguments without the program name; default ``sys.argv[1:]``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _wants_debug(args)
    try:
        command = typer.main.get_command(build_app())
        command.main(args=args, prog_name="eqtool", standalone_mode=True)
    except SystemExit:
        raise
    except EqtoolError as e:
        if debug:
            raise
        print(f"error: {_oneline(e.oneline())}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPT)
    except Exception as e:
        if debug:
            raise
        print(f"error: internal error: {type(e).__name__}: {_oneline(e)} "
              "(rerun with --debug for the traceback)", file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(0)


if __name__ == "__main__":  # python -m eqtool.cli.main
    main()
