"""Lazy imports of the docking extra (``pip install eqtool[dock]``): vina, meeko, gemmi."""

from __future__ import annotations

import importlib

from eqtool.errors import EqtoolError

__all__ = ["need"]

_PIP = {"vina": "vina", "meeko": "meeko", "gemmi": "gemmi", "posebusters": "posebusters"}


def need(module: str):
    """Import ``module`` or raise :class:`EqtoolError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = _PIP.get(module.split(".")[0], module)
        raise EqtoolError(f"needs the Python package {pkg!r} ({exc}); install it with "
                          "pip install 'eqtool[dock]'", source="eqtool dock") from exc
