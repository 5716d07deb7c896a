"""Element handling: atomic number -> model element index, and the one-hot -> linear embedding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eqtool.errors import EqtoolError

__all__ = ["ElementIndex", "ElementEmbedding"]

MAX_Z = 118


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"


class ElementIndex(nn.Module):
    """Map atomic numbers ``[N]`` to indices ``[N]`` into the model's sorted element list.

    Buffers: ``atomic_numbers`` ``[n_elements]`` (sorted, unique) and a lookup table ``[MAX_Z + 1]``.
    Raises :class:`EqtoolError` when a batch contains an element the model was not built for.
    """

    def __init__(self, atomic_numbers: Sequence[int]):
        super().__init__()
        zs = sorted({int(z) for z in atomic_numbers})
        if not zs:
            raise EqtoolError("a model needs at least one element in 'atomic_numbers'")
        bad = [z for z in zs if not 1 <= z <= MAX_Z]
        if bad:
            raise EqtoolError(f"unknown atomic number(s) {bad} in 'atomic_numbers' (1..{MAX_Z})")
        table = torch.full((MAX_Z + 1,), -1, dtype=torch.long)
        table[torch.tensor(zs)] = torch.arange(len(zs))
        self.register_buffer("atomic_numbers", torch.tensor(zs, dtype=torch.long))
        self.register_buffer("table", table, persistent=False)

    @property
    def num_elements(self) -> int:
        return int(self.atomic_numbers.numel())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        idx = self.table[z.clamp(0, MAX_Z)]  # [N]
        if bool((idx < 0).any()) or bool((z > MAX_Z).any()):
            missing = sorted({int(v) for v in z[(idx < 0) | (z > MAX_Z)].tolist()})
            known = ", ".join(_symbol(int(v)) for v in self.atomic_numbers.tolist())
            raise EqtoolError(
                f"element(s) {', '.join(_symbol(v) for v in missing)} not supported by this model "
                f"(it was built for: {known})", source="model")
        return idx


class ElementEmbedding(nn.Module):
    """One-hot element encoding followed by a bias-free linear layer: ``[N] -> [N, num_features]``.

    ``one_hot(idx) @ W`` is computed as the row lookup ``W[idx]`` (same result, no [N, n_el] matmul).
    """

    def __init__(self, num_elements: int, num_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_elements, num_features))
        self.num_features = num_features

    def forward(self, element_index: torch.Tensor) -> torch.Tensor:
        return self.weight[element_index]  # [N, F]
