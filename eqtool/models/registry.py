"""The model registry: ONE explicit dict ``name -> builder`` (no decorators, no global state).

Every builder takes keyword arguments only and returns an ``nn.Module`` with ``.config`` (so
``build_model(**model.config)`` rebuilds it), ``.cutoff`` (Å) and ``.atomic_numbers``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from eqtool.errors import EqtoolError
from eqtool.models.docking.equibind import EquiBind
from eqtool.models.generative.edm import EDM
from eqtool.models.hamiltonian.qhnet import QHNet
from eqtool.models.potential.egnn import EGNN
from eqtool.models.potential.mace import MACE

__all__ = ["MODELS", "build_model", "model_kwargs", "models_of_kind"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mace": MACE,
    "egnn": EGNN,
    "edm": EDM,
    "qhnet": QHNet,
    "equibind": EquiBind,
}


def models_of_kind(kind: str) -> list[str]:
    """Registered names whose builder declares ``kind`` (e.g. ``"potential"`` for energy models)."""
    return [name for name, builder in MODELS.items() if getattr(builder, "kind", None) == kind]


def model_kwargs(name: str) -> dict[str, object]:
    """The keyword arguments of model ``name`` and their defaults (``inspect.Parameter.empty`` if none)."""
    if name not in MODELS:
        raise EqtoolError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}",
                          source="model")
    sig = inspect.signature(MODELS[name])
    return {k: p.default for k, p in sig.parameters.items()}


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names or keyword arguments raise :class:`EqtoolError`."""
    valid = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise EqtoolError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid options: "
                          f"{', '.join(valid)}", source="model")
    try:
        return MODELS[name](**kwargs)
    except EqtoolError:
        raise
    except (TypeError, ValueError) as exc:
        raise EqtoolError(f"invalid options for model {name!r}: {exc}", source="model") from None
