"""The ``eqtool`` command line: a Typer app with one thin file per command.

Entry point: :func:`eqtool.cli.main.main` (console script ``eqtool``). Command files only parse
options and call library functions; user-fixable problems raise :class:`eqtool.errors.EqtoolError`,
which :func:`~eqtool.cli.main.main` prints as one line and turns into exit code 2.
"""

__all__: list[str] = []
