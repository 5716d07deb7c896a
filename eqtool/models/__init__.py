"""Models. Energy potentials live in :mod:`eqtool.models.potential`; the registry in :mod:`.registry`."""

from eqtool.models.registry import MODELS, build_model

__all__ = ["MODELS", "build_model"]
