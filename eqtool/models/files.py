"""Model files: ``state_dict`` + versioned config + eqtool version, loaded with ``weights_only=True``.

A model file is a ``torch.save`` of a plain dict (no pickled modules)::

    {"format": "eqtool-model", "format_version": 1, "eqtool_version": "0.1.0",
     "config": model.config,            # build_model(**config) rebuilds the architecture
     "state_dict": {...},               # tensors
     "extra": {...}}                    # free JSON-like metadata (training metrics, units, ...)

Files written by older ``format_version`` s are upgraded on load by the functions in
:data:`MIGRATIONS` (version ``v`` -> ``v + 1``), so old files keep loading.

Shipped models live in ``eqtool/models/files/<name>.pt`` and load by name (``load_model("cu-emt")``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from eqtool.errors import EqtoolError

__all__ = ["save_model", "load_model", "read_model_file", "model_from_payload", "model_kind",
           "shipped_models", "KINDS", "FORMAT", "FORMAT_VERSION", "MIGRATIONS", "SHIPPED_DIR"]

FORMAT = "eqtool-model"
FORMAT_VERSION = 1
SHIPPED_DIR = Path(__file__).with_name("files")

# format_version v -> function(payload dict) -> payload dict of version v + 1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _plain(value):
    """Config/extra values as plain Python types (torch.load(weights_only=True) accepts them)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return value


def save_model(model: torch.nn.Module, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (which must have a ``.config`` dict) to ``path`` atomically.

    Args:
        model: a registry model; ``build_model(**model.config)`` must rebuild it.
        path: output file (conventionally ``.pt``); its folder must exist.
        extra: JSON-like metadata stored alongside (e.g. test metrics).

    Returns:
        the path written.
    """
    from eqtool import __version__
    from eqtool.io.atomic import atomic_path

    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise EqtoolError("model has no .config dict, so it cannot be rebuilt from a file",
                          source=str(path))
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "eqtool_version": __version__,
        "config": _plain(dict(config)),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": _plain(dict(extra or {})),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def shipped_models() -> dict[str, Path]:
    """Names of the models shipped with eqtool -> their files."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.pt"))}


def _resolve(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_models()
    if isinstance(name_or_path, str) and name_or_path in shipped:
        return shipped[name_or_path]
    if path.exists():
        raise EqtoolError("is not a file", source=str(path))
    if path.suffix or os.sep in str(name_or_path) or "/" in str(name_or_path):
        raise EqtoolError("model file not found", source=str(path))
    avail = ", ".join(shipped) or "none"
    raise EqtoolError(f"no model file or shipped model named {str(name_or_path)!r}; shipped models: {avail}",
                      source="model")


def read_model_file(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Load and migrate the payload dict of a model file (or shipped name), without building it."""
    path = _resolve(name_or_path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors have many types
        raise EqtoolError(f"not an eqtool model file (cannot be read by torch.load: "
                          f"{type(e).__name__})", source=str(path)) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = " (a Lightning checkpoint? use `eqtool export RUN_DIR`)" if isinstance(payload, dict) \
            and "pytorch-lightning_version" in payload else ""
        raise EqtoolError(f"not an eqtool model file{hint}", source=str(path))
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise EqtoolError(f"model file format_version {version} is newer than this eqtool supports "
                          f"({FORMAT_VERSION}); upgrade eqtool", source=str(path))
    while version < FORMAT_VERSION:
        if version not in MIGRATIONS:
            raise EqtoolError(f"no migration from model file format_version {version}", source=str(path))
        payload = MIGRATIONS[version](payload)
        version = payload["format_version"]
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise EqtoolError(f"model file has no {key!r} dict", source=str(path))
    payload["path"] = str(path)
    return payload


def model_from_payload(payload: dict[str, Any], device="cpu", dtype: torch.dtype | None = None,
                       source: str = "model") -> torch.nn.Module:
    """Build the model in ``payload['config']`` and load ``payload['state_dict']`` strictly."""
    from eqtool.models.registry import build_model

    floats = [v.dtype for v in payload["state_dict"].values() if v.is_floating_point()]
    saved = floats[0] if floats else torch.get_default_dtype()
    model = build_model(**payload["config"]).to(saved)  # load at the saved precision, then cast
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as e:
        raise EqtoolError(f"weights do not match the model config ({' '.join(str(e).split())[:300]})",
                          source=source) from None
    return model.to(device=device, dtype=dtype or saved).eval()


KINDS = {"potential": "potential (energy, forces, stress)", "hamiltonian": "Hamiltonian model",
         "docking": "docking model", "generative": "generative (diffusion) model"}


def model_kind(payload: dict[str, Any]) -> str:
    """What a model file's model does: ``"potential"``, ``"hamiltonian"``, ``"docking"``,
    ``"generative"`` (the registry class's ``kind``), or ``"unknown"``."""
    from eqtool.models.registry import MODELS

    return getattr(MODELS.get(payload["config"].get("name")), "kind", "unknown")


def load_model(name_or_path: str | os.PathLike, device="cpu", dtype: torch.dtype | str | None = None,
               kind: str | None = None) -> torch.nn.Module:
    """Load a model file (or a shipped model by name, e.g. ``"cu-emt"``) in eval mode.

    Args:
        name_or_path: a path written by :func:`save_model` or a name in :func:`shipped_models`.
        device: where to put the model.
        dtype: ``torch.float32``/``torch.float64`` (or ``"float32"``/``"float64"``); default the
            dtype the weights were saved in.
        kind: if given, the model must be of this kind (a key of :data:`KINDS`).

    Raises:
        EqtoolError: missing file, not a model file, unknown shipped name (lists the available
            ones), a format_version without a migration, weights that do not fit the config, a
            model of another kind than ``kind``.
    """
    if isinstance(dtype, str):
        if dtype not in ("float32", "float64"):
            raise EqtoolError(f"dtype must be 'float32' or 'float64', got {dtype!r}", source="dtype")
        dtype = getattr(torch, dtype)
    payload = read_model_file(name_or_path)
    if kind is not None and (actual := model_kind(payload)) != kind:
        raise EqtoolError(f"this is a {KINDS.get(actual, actual + ' model')}, not a {KINDS.get(kind, kind)}",
                          source=str(name_or_path))
    model = model_from_payload(payload, device=device, dtype=dtype, source=payload["path"])
    return model
