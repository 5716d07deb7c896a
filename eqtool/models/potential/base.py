"""Shared pieces of the energy models: elements, E0s/scale/shift head, edge vectors, config."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from eqtool.data import keys as K
from eqtool.errors import EqtoolError
from eqtool.nn.embedding import ElementIndex
from eqtool.nn.scatter import scatter_sum

__all__ = ["PotentialBase", "edge_vectors", "normalize_e0s"]


def normalize_e0s(e0s: Mapping | None, atomic_numbers: Sequence[int] | None) -> tuple[list[int], dict]:
    """Check ``atomic_numbers`` / ``e0s`` (keys may be ints or digit strings, as after JSON).

    Returns the sorted element list and ``{Z: E0}`` (eV) over exactly those elements.
    """
    parsed: dict[int, float] = {}
    for key, value in dict(e0s or {}).items():
        try:
            parsed[int(key)] = float(value)
        except (TypeError, ValueError):
            raise EqtoolError(f"'e0s' must map atomic numbers to energies (eV), got {key!r}: {value!r}",
                              source="model") from None
    if atomic_numbers is None:
        if not parsed:
            raise EqtoolError("give 'atomic_numbers' (the elements the model supports) or 'e0s'",
                              source="model")
        atomic_numbers = list(parsed)
    try:
        zs = sorted({int(z) for z in atomic_numbers})
    except (TypeError, ValueError):
        raise EqtoolError(f"'atomic_numbers' must be a list of integers, got {atomic_numbers!r}",
                          source="model") from None
    if parsed:
        missing = sorted(set(zs) - set(parsed))
        extra = sorted(set(parsed) - set(zs))
        if missing or extra:
            raise EqtoolError(f"'e0s' elements {sorted(parsed)} do not match 'atomic_numbers' {zs}",
                              source="model")
    return zs, {z: parsed.get(z, 0.0) for z in zs}


def edge_vectors(batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edge vectors ``pos[sender] - pos[receiver] + shift @ cell[batch[receiver]]``.

    Returns ``(vec [E, 3] Å, sender [E], receiver [E])``. Computed from positions and cell so that
    autograd through them gives forces and stress.
    """
    if K.EDGE_INDEX not in batch:
        raise EqtoolError("batch has no 'edge_index': collate it with cutoff=model.cutoff", source="model")
    pos = batch[K.POSITIONS]
    sender, receiver = batch[K.EDGE_INDEX][0], batch[K.EDGE_INDEX][1]
    vec = pos[sender] - pos[receiver]  # [E, 3]
    shift = batch.get(K.EDGE_SHIFT)
    if shift is not None and shift.numel() > 0:
        cell = batch[K.CELL][batch[K.BATCH][receiver]]  # [E, 3, 3]
        vec = vec + torch.einsum("ei,eij->ej", shift.to(pos.dtype), cell)
    return vec, sender, receiver


class PotentialBase(nn.Module):
    """Element bookkeeping and the per-atom energy head ``scale * x + shift + E0[Z]``.

    Subclasses set ``self.config`` (JSON-safe: ``{"name": ..., **kwargs}``) and call
    :meth:`finish` with their per-atom readout.

    Buffers: ``atomic_numbers`` ``[n_el]`` (via :attr:`elements`), ``e0`` ``[n_el]`` eV,
    ``scale``, ``shift`` (eV).
    """

    kind = "potential"  # energy model: eqtool.physics.compute_outputs applies

    def __init__(self, atomic_numbers, e0s, cutoff: float, scale: float, shift: float,
                 avg_num_neighbors: float):
        super().__init__()
        zs, e0 = normalize_e0s(e0s, atomic_numbers)
        for name, value in (("cutoff", cutoff), ("scale", scale), ("avg_num_neighbors", avg_num_neighbors)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise EqtoolError(f"'{name}' must be a positive number, got {value!r}", source="model")
        if not isinstance(shift, (int, float)) or not math.isfinite(shift):
            raise EqtoolError(f"'shift' must be a finite number, got {shift!r}", source="model")
        self.elements = ElementIndex(zs)
        self.cutoff = float(cutoff)
        self.avg_num_neighbors = float(avg_num_neighbors)
        dtype = torch.get_default_dtype()
        self.register_buffer("e0", torch.tensor([e0[z] for z in zs], dtype=dtype))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=dtype))
        self.register_buffer("shift", torch.tensor(float(shift), dtype=dtype))
        self._e0s = e0
        self.config: dict = {}

    @property
    def atomic_numbers(self) -> torch.Tensor:
        """``[n_el]`` the supported elements (a buffer, sorted)."""
        return self.elements.atomic_numbers

    def element_index(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[N]`` model element index of every atom; checks elements and the batch dtype."""
        pos = batch[K.POSITIONS]
        if pos.dtype != self.e0.dtype:
            raise EqtoolError(f"batch positions are {pos.dtype} but the model is {self.e0.dtype}: "
                              "convert one (model.to(dtype) or to_device(batch, dtype=...))", source="model")
        return self.elements(batch[K.ATOMIC_NUMBERS])

    def finish(self, readout: torch.Tensor, element_index: torch.Tensor,
               batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``readout [N]`` -> ``{"energies": [N] eV, "energy": [B] eV}``."""
        energies = self.scale * readout + self.shift + self.e0[element_index]  # [N]
        n_sys = int(batch[K.N_ATOMS].shape[0])
        energy = scatter_sum(energies, batch[K.BATCH], n_sys)  # [B]
        return {K.ENERGIES: energies, K.ENERGY: energy}
