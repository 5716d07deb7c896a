"""Load a YAML recipe into a frozen :class:`~eqtool.config.schema.RunConfig`.

* ``yaml.safe_load`` only (a recipe cannot execute code);
* ``--set key.sub=value`` overrides, the value parsed as a YAML scalar (``1e-3``, ``true``, ``null``,
  ``[0, 1]``);
* every key is checked: unknown keys (with close-match suggestions), missing required keys and
  wrong types raise :class:`~eqtool.errors.EqtoolError` naming the key and the file (or ``--set``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from eqtool.config.schema import LOSS_SCHEMAS, ConfigValueError, RunConfig
from eqtool.errors import EqtoolError

__all__ = ["load_config", "config_from_dict", "apply_overrides", "parse_override", "to_dict",
           "save_config", "build_section"]

OVERRIDE_SOURCE = "--set"


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` that also reads ``1e-3`` as a float (YAML 1.1 demands ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def safe_load(text: str):
    """``yaml.safe_load`` with scientific notation without a dot read as float."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; a missing file or bad YAML is an EqtoolError."""
    path = Path(path)
    if not path.is_file():
        raise EqtoolError("recipe file not found", source=str(path))
    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise EqtoolError(f"not valid YAML: {getattr(e, 'problem', None) or e}", str(path), where) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise EqtoolError(f"a recipe must be a YAML mapping, got {type(raw).__name__}", source=str(path))
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> ``(["optim", "lr"], 0.001)``; the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise EqtoolError(f"expected KEY.SUB=VALUE, got {text!r}", source=OVERRIDE_SOURCE)
    try:
        parsed = safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.split("."), parsed


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> tuple[dict, set[str]]:
    """Return a deep copy of ``raw`` with ``--set`` overrides applied, and the overridden key paths."""
    out = _deepcopy(raw)
    keys: set[str] = set()
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise EqtoolError(f"cannot set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a mapping",
                                  source=OVERRIDE_SOURCE)
            node = child
        node[path[-1]] = value
        keys.add(".".join(path))
    return out, keys


def _deepcopy(x):
    if isinstance(x, Mapping):
        return {k: _deepcopy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deepcopy(v) for v in x]
    return x


class _Ctx:
    """Where values come from, to name the right source in errors."""

    def __init__(self, source: str, overridden: set[str]):
        self.source, self.overridden = source, overridden

    def fail(self, key: str, message: str):
        src = self.source
        if any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in self.overridden):
            src = OVERRIDE_SOURCE
        raise EqtoolError(f"{key}: {message}" if key else message, source=src)


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is not None:
        return {dict: "a mapping", list: "a list"}.get(origin, str(tp))
    return getattr(tp, "__name__", str(tp))


def _check(value, tp, key: str, ctx: _Ctx):
    """Return ``value`` checked against the annotation ``tp`` (ints are accepted as floats)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            ctx.fail(key, f"expected a mapping, got {value!r}")
        return build_section(tp, value, key, ctx)
    if origin is typing.Literal:
        if value in typing.get_args(tp) and isinstance(value, str):
            return value
        ctx.fail(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check(value, arg, key, _Ctx(ctx.source, ctx.overridden))
            except EqtoolError:
                continue
        ctx.fail(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is dict:
        ktp, vtp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, Mapping):
            ctx.fail(key, f"expected a mapping, got {value!r}")
        return {_check(k, ktp, f"{key}.{k}", ctx): _check(v, vtp, f"{key}.{k}", ctx)
                for k, v in value.items()}
    if origin is list:
        (etp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            ctx.fail(key, f"expected a list, got {value!r}")
        return [_check(v, etp, f"{key}[{i}]", ctx) for i, v in enumerate(value)]
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(value, tp):
        return value
    ctx.fail(key, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def build_section(cls, raw: Mapping[str, Any], prefix: str = "", ctx: _Ctx | None = None,
                  overrides_types: Mapping[str, Any] | None = None):
    """Build the dataclass ``cls`` from ``raw``, checking keys and types.

    Args:
        cls: a (frozen) dataclass of :mod:`eqtool.config.schema`.
        raw: the section's mapping.
        prefix: dotted key of the section, for messages (``"optim"``).
        ctx: error context (source file and overridden keys).
        overrides_types: field name -> annotation replacing the declared one (used for ``loss``,
            whose schema depends on the task).
    """
    ctx = ctx or _Ctx("config", set())
    hints = typing.get_type_hints(cls)
    hints.update(overrides_types or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}

    def dotted(k) -> str:
        return f"{prefix}.{k}" if prefix else str(k)

    for k in raw:
        if k not in fields:
            close = difflib.get_close_matches(str(k), list(fields), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(dotted(c)) for c in close)}?" if close else \
                f"; valid keys: {', '.join(fields)}"
            ctx.fail(dotted(k), f"unknown key {dotted(k)!r}{hint}")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _check(raw[name], hints[name], dotted(name), ctx)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            ctx.fail(dotted(name), f"missing required key {dotted(name)!r}")
        elif dataclasses.is_dataclass(hints[name]):
            values[name] = build_section(hints[name], {}, dotted(name), ctx)
    try:
        return cls(**values)
    except ConfigValueError as e:
        ctx.fail(dotted(e.key), str(e))


def config_from_dict(raw: Mapping[str, Any], source: str = "config", overrides: Iterable[str] = (),
                     run_dir: str | None = None) -> RunConfig:
    """Validate a recipe mapping (plus ``--set`` overrides) into a :class:`RunConfig`.

    ``run_dir`` (e.g. from ``--run-dir``) wins over the recipe's ``run_dir``; if neither is set it
    defaults to ``runs/<stem of source>``.
    """
    raw, overridden = apply_overrides(raw, overrides)
    if run_dir is not None:
        raw["run_dir"] = str(run_dir)
    ctx = _Ctx(source, overridden)
    task = raw.get("task", "potential")
    if not isinstance(task, str) or task not in LOSS_SCHEMAS:
        ctx.fail("task", f"unknown task {task!r}; available: {', '.join(LOSS_SCHEMAS)}")
    cfg = build_section(RunConfig, raw, "", ctx, overrides_types={"loss": LOSS_SCHEMAS[task]})
    if cfg.run_dir is None:
        cfg = dataclasses.replace(cfg, run_dir=str(Path("runs") / Path(source).stem))
    return cfg


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (),
                run_dir: str | None = None) -> RunConfig:
    """Read a YAML recipe, apply ``--set`` overrides and validate it (see :func:`config_from_dict`).

    Raises:
        EqtoolError: missing/unreadable file, bad YAML, unknown or missing keys, bad values.
    """
    return config_from_dict(read_yaml(path), source=str(path), overrides=overrides, run_dir=run_dir)


def to_dict(cfg) -> dict[str, Any]:
    """Plain nested dict (YAML/JSON-serialisable) of a config dataclass."""
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML atomically; :func:`load_config` reads it back to an equal config."""
    from eqtool.io.atomic import atomic_write

    with atomic_write(path) as fh:
        yaml.safe_dump(to_dict(cfg), fh, sort_keys=False)
