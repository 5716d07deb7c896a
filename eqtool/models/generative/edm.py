"""EDM: E(3)-equivariant diffusion model for 3D molecules (Hoogeboom et al., ICML 2022).

A molecule is ``(x, h)``: positions ``x`` ``[N, 3]`` in Å on the zero centre-of-mass subspace and
atom features ``h`` ``[N, F]`` = one-hot atom type times ``type_scale`` (EDM: 1/4) followed, with
``include_charges``, by the atomic number times ``charge_scale`` (EDM: 1/10). Both are diffused
with the same schedule; :class:`~eqtool.models.generative.egnn.EGNNDenoiser` predicts the noise.

The model also carries what sampling needs from the training data: the atom types and the
histogram of atom counts (``n_atoms_hist[n]`` = training molecules with ``n`` atoms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from eqtool.data import keys as K
from eqtool.errors import EqtoolError
from eqtool.models.generative.egnn import EGNNDenoiser, remove_mean
from eqtool.models.generative.schedule import NoiseSchedule

__all__ = ["EDM"]


def _int(name: str, value, lo: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise EqtoolError(f"'{name}' must be an integer >= {lo}, got {value!r}", source="model")
    return value


class EDM(nn.Module):
    """Diffusion model ``forward(batch) -> {"eps_positions", "eps_features"}`` (the denoiser's output).

    Args:
        atom_types: atomic numbers of the one-hot channels, e.g. ``[1, 6, 7, 8, 9]`` for QM9.
        include_charges: add the atomic number as one more (integer-valued) feature.
        num_features: hidden width of the EGNN.
        num_layers: equivariant blocks; ``sublayers`` invariant layers per block.
        attention, tanh, coords_range, norm_constant, aggregation_factor: see
            :class:`~eqtool.models.generative.egnn.EGNNDenoiser`.
        timesteps: ``T`` (EDM: 1000).
        noise_schedule: ``"polynomial_2"`` (EDM's QM9 setting).
        noise_precision: ``s`` of the schedule (EDM: 1e-5).
        type_scale: scale of the one-hot types (EDM: 0.25).
        charge_scale: scale of the charge feature (EDM: 0.1).
        n_atoms_hist: ``n_atoms_hist[n]`` = count of training molecules with ``n`` atoms (fitted
            from the data by the training task); needed to sample without a fixed atom count.
    """

    kind = "generative"

    def __init__(self, atom_types: Sequence[int] = (1, 6, 7, 8, 9), include_charges: bool = True,
                 num_features: int = 256, num_layers: int = 9, sublayers: int = 1, attention: bool = True,
                 tanh: bool = True, coords_range: float = 15.0, norm_constant: float = 1.0,
                 aggregation_factor: float = 1.0, timesteps: int = 1000, noise_schedule: str = "polynomial_2",
                 noise_precision: float = 1e-5, type_scale: float = 0.25, charge_scale: float = 0.1,
                 n_atoms_hist: Sequence[int] | None = None):
        super().__init__()
        types = [int(z) for z in atom_types]
        if not types or len(set(types)) != len(types) or min(types) < 1 or max(types) > 118:
            raise EqtoolError(f"'atom_types' must be distinct atomic numbers, got {list(atom_types)!r}",
                              source="model")
        for name, value, lo in (("num_features", num_features, 1), ("num_layers", num_layers, 1),
                                ("sublayers", sublayers, 1), ("timesteps", timesteps, 1)):
            _int(name, value, lo)
        for name, value in (("type_scale", type_scale), ("charge_scale", charge_scale),
                            ("coords_range", coords_range), ("aggregation_factor", aggregation_factor)):
            if not value > 0:
                raise EqtoolError(f"'{name}' must be > 0, got {value!r}", source="model")
        hist = [int(c) for c in n_atoms_hist] if n_atoms_hist is not None else None
        if hist is not None and (any(c < 0 for c in hist) or sum(hist[1:]) == 0):
            raise EqtoolError("'n_atoms_hist' must be non-negative counts with at least one molecule",
                              source="model")
        self.atom_types = types
        self.include_charges = bool(include_charges)
        self.num_types = len(types)
        self.in_features = self.num_types + int(self.include_charges)
        self.type_scale, self.charge_scale = float(type_scale), float(charge_scale)
        self.schedule = NoiseSchedule(noise_schedule, timesteps, noise_precision)
        self.denoiser = EGNNDenoiser(self.in_features, num_features, num_layers, sublayers, attention, tanh,
                                     coords_range, norm_constant, aggregation_factor)
        self.cutoff = math.inf  # fully connected within each molecule
        lookup = torch.full((119,), -1, dtype=torch.long)
        lookup[torch.tensor(types)] = torch.arange(len(types))
        self.register_buffer("atomic_numbers", torch.tensor(types, dtype=torch.long), persistent=False)
        self.register_buffer("_type_index", lookup, persistent=False)
        self.n_atoms_hist = hist
        self.config = {
            "name": "edm", "atom_types": types, "include_charges": self.include_charges,
            "num_features": num_features, "num_layers": num_layers, "sublayers": sublayers,
            "attention": bool(attention), "tanh": bool(tanh), "coords_range": float(coords_range),
            "norm_constant": float(norm_constant), "aggregation_factor": float(aggregation_factor),
            "timesteps": timesteps, "noise_schedule": noise_schedule,
            "noise_precision": float(noise_precision),
            "type_scale": self.type_scale, "charge_scale": self.charge_scale, "n_atoms_hist": hist,
        }

    @property
    def timesteps(self) -> int:
        """``T``."""
        return self.schedule.timesteps

    @property
    def max_atoms(self) -> int | None:
        """Largest atom count seen in training (``None`` without a histogram)."""
        if self.n_atoms_hist is None:
            return None
        return max(n for n, c in enumerate(self.n_atoms_hist) if c > 0)

    @property
    def feature_bound(self) -> float:
        """Largest magnitude of a clean feature: ``type_scale``, or ``charge_scale`` x the largest
        atomic number with charges."""
        bound = self.type_scale
        if self.include_charges:
            bound = max(bound, self.charge_scale * float(self.atomic_numbers.max()))
        return bound

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Predicted noise of the noisy ``positions``/``node_features`` at ``diffusion_time``."""
        return self.denoiser(batch)

    # ------------------------------------------------------------------ encoding
    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean ``(x [N, 3] Å, zero CoM per molecule; h [N, F])`` of a data batch.

        Raises:
            EqtoolError: an atomic number that is not one of ``atom_types``.
        """
        z = batch[K.ATOMIC_NUMBERS]
        idx = self._type_index[z.clamp(0, 118)]
        if bool((idx < 0).any()) or bool(((z < 0) | (z > 118)).any()):
            bad = sorted({int(v) for v in z[idx < 0].tolist()})
            raise EqtoolError(f"atomic number(s) {bad} not among the model's atom types {self.atom_types}",
                              source="model")
        dtype = batch[K.POSITIONS].dtype
        h = torch.nn.functional.one_hot(idx, self.num_types).to(dtype) * self.type_scale
        if self.include_charges:
            h = torch.cat([h, z.to(dtype).unsqueeze(-1) * self.charge_scale], dim=-1)
        x = remove_mean(batch[K.POSITIONS], batch[K.BATCH], batch[K.N_ATOMS])
        return x, h

    def decode_types(self, h: torch.Tensor) -> torch.Tensor:
        """Atomic numbers ``[N]`` from features ``[N, F]``: argmax of the type channels (as EDM)."""
        return self.atomic_numbers[h[:, : self.num_types].argmax(dim=-1)]

    def extra_repr(self) -> str:
        return f"atom_types={self.atom_types}, charges={self.include_charges}, max_atoms={self.max_atoms}"
