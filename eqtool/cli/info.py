"""``eqtool info``: versions, platform, threads and accelerators, as a table or JSON."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from typing import Any

import typer

__all__ = ["info", "collect"]

# distribution names whose versions are reported, in display order
PACKAGES = ("eqtool", "torch", "e3nn", "ase", "pymatgen", "rdkit", "lightning", "h5py", "numpy", "vesin")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def collect() -> dict[str, Any]:
    """Return the environment report as a JSON-serialisable dict.

    Keys: ``versions`` (package -> version or None), ``python``, ``platform``, ``torch``
    (``num_threads``, ``num_interop_threads``, ``default_dtype``, ``cuda_available``,
    ``cuda_devices``, ``cuda_version``, ``mps_available``).
    """
    import torch

    cuda = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    return {
        "versions": {name: _version(name) for name in PACKAGES},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": {
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "default_dtype": str(torch.get_default_dtype()).removeprefix("torch."),
            "cuda_available": cuda,
            "cuda_version": torch.version.cuda,
            "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if cuda else [],
            "mps_available": bool(mps_backend is not None and mps_backend.is_available()),
        },
    }


def info(
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON to stdout."),
) -> None:
    """Show versions of eqtool and its dependencies, the platform, threads and accelerators.

    Example: eqtool info --json
    """
    report = collect()
    if as_json:
        print(json.dumps(report, indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title="eqtool environment", show_header=True)
    table.add_column("item")
    table.add_column("value")
    for name, ver in report["versions"].items():
        table.add_row(name, ver or "[dim]not installed[/dim]")
    table.add_row("python", report["python"])
    table.add_row("platform", report["platform"])
    t = report["torch"]
    table.add_row("torch threads", f"{t['num_threads']} (interop {t['num_interop_threads']})")
    table.add_row("default dtype", t["default_dtype"])
    cuda = ", ".join(t["cuda_devices"]) if t["cuda_available"] else "not available"
    if t["cuda_available"] and t["cuda_version"]:
        cuda += f" (CUDA {t['cuda_version']})"
    table.add_row("CUDA", cuda)
    table.add_row("MPS", "available" if t["mps_available"] else "not available")
    Console().print(table)
