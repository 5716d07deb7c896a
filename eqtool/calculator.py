"""The ASE calculator: :class:`EqCalculator` puts an eqtool potential (or a committee) behind ASE.

Usage::

    from eqtool.calculator import EqCalculator
    atoms.calc = EqCalculator(model="cu-emt", device="auto", dtype="float64")
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()

Results (ASE units and conventions): ``energy``/``free_energy`` eV, ``energies`` ``[N]`` eV
per atom, ``forces`` ``[N, 3]`` eV/Å, ``stress`` Voigt ``[6]`` (xx, yy, zz, yz, xz, xy) eV/Å³,
negative under compression (only for cells periodic in all three directions). With a committee
(several model files) every result is the committee mean, and ``energy_std`` (eV) and
``forces_std`` ``[N, 3]`` (eV/Å) hold the standard deviation across members.

Neighbour lists are reused with a Verlet skin: candidates are listed once within
``max(cutoff) + skin`` and filtered to each model's cutoff at every call; the list is rebuilt when
an atom moved more than ``skin / 2`` since the last build, or the cell, pbc or elements changed.

ASE plugin: the module-level ``__ase_plugins__`` registers the class under the name ``"eqtool"``
for ASE's plugin system (entry-point group ``ase.plugins``, declared in ``pyproject.toml``).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from eqtool.data import keys as K
from eqtool.errors import EqtoolError

__all__ = ["EqCalculator", "NonFiniteError", "DEFAULT_SKIN"]

DEFAULT_SKIN = 0.5  # Å
_VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])  # (xx, yy, zz, yz, xz, xy)


class NonFiniteError(EqtoolError):
    """Positions or cell contain NaN/inf (typically: a simulation blew up)."""


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"


def _resolve_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float64):
        return dtype
    if dtype in ("float32", "float64"):
        return getattr(torch, dtype)
    raise EqtoolError(f"dtype must be 'float32' or 'float64', got {dtype!r}", source="dtype")


def _resolve_device(device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    from eqtool.tasks.inference import resolve_device

    return resolve_device(str(device))


def _load(spec, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    if isinstance(spec, torch.nn.Module):
        return spec.to(device=device, dtype=dtype).eval()
    if not isinstance(spec, (str, os.PathLike)):
        raise EqtoolError(f"model must be a name, a path or an nn.Module, got {type(spec).__name__}",
                          source="model")
    from eqtool.models.files import load_model

    return load_model(spec, device=device, dtype=dtype, kind="potential")


class EqCalculator(Calculator):
    """ASE calculator for eqtool potentials.

    Args:
        model: a shipped model name (``"cu-emt"``), a model file path, an ``nn.Module``, or a
            list of those (a committee: results are means, plus ``energy_std``/``forces_std``).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"float64"`` (default; for relaxations, phonons, NVE) or ``"float32"``.
        skin: Verlet skin in Å for neighbour-list reuse; ``0`` rebuilds at every call.
        neighbor_fn: neighbour-list function ``(positions, cell, pbc, cutoff) -> (edge_index,
            edge_shift)`` (default :func:`eqtool.data.neighbors.neighbor_list`).
        **kwargs: passed to :class:`ase.calculators.calculator.Calculator`.

    Raises:
        EqtoolError: unknown model name, unreadable model file, bad dtype/device, and (at
            calculation time) an element the model was not trained on.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters: dict = {}

    def __init__(self, model="cu-emt", device="auto", dtype="float64", skin: float = DEFAULT_SKIN,
                 neighbor_fn=None, **kwargs):
        super().__init__(**kwargs)
        self.dtype = _resolve_dtype(dtype)
        self.device = _resolve_device(device)
        specs = list(model) if isinstance(model, (list, tuple)) else [model]
        if not specs:
            raise EqtoolError("a committee needs at least one model", source="model")
        self.models = [_load(s, self.device, self.dtype) for s in specs]
        try:
            self.skin = float(skin)
        except (TypeError, ValueError):
            raise EqtoolError(f"skin must be a number of Å, got {skin!r}", source="skin") from None
        if not np.isfinite(self.skin) or self.skin < 0:
            raise EqtoolError(f"skin must be >= 0 Å, got {skin!r}", source="skin")
        if neighbor_fn is None:
            from eqtool.data.neighbors import neighbor_list as neighbor_fn
        self.neighbor_fn = neighbor_fn
        self.cutoffs = [float(m.cutoff) for m in self.models]
        elements = [set(int(z) for z in m.atomic_numbers.tolist()) for m in self.models]
        self.elements: frozenset[int] = frozenset(set.intersection(*elements))
        self._nl: dict | None = None
        self.min_distance = float("inf")  # Å, closest pair within the candidate list at the last call
        self.n_neighbor_builds = 0  # how often the candidate list was rebuilt (for tests and logs)

    # ---------------------------------------------------------------- helpers
    @property
    def committee_size(self) -> int:
        return len(self.models)

    def check_elements(self, numbers: np.ndarray, source: str = "structure") -> None:
        """Raise EqtoolError if ``numbers`` contains an element the model(s) do not support."""
        missing = sorted(set(int(z) for z in np.unique(numbers)) - self.elements)
        if missing:
            known = ", ".join(_symbol(z) for z in sorted(self.elements))
            raise EqtoolError(f"element(s) {', '.join(_symbol(z) for z in missing)} not supported by "
                              f"the model (it knows: {known})", source=source)

    def _candidates(self, pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray):
        """Cached ``(edge_index [2, E], edge_shift [E, 3])`` within ``max cutoff + skin``."""
        nl = self._nl
        if nl is not None and nl["numbers"].shape == numbers.shape and (nl["numbers"] == numbers).all() \
                and (nl["pbc"] == pbc).all() and np.array_equal(nl["cell"], cell):
            moved = np.linalg.norm(pos - nl["positions"], axis=1).max(initial=0.0)
            if moved <= 0.5 * self.skin:
                return nl["edge_index"], nl["edge_shift"]
        ei, sh = self.neighbor_fn(pos, cell, pbc, max(self.cutoffs) + self.skin)
        ei = np.asarray(ei, dtype=np.int64)
        sh = np.asarray(sh, dtype=np.float64)
        self._nl = {"positions": pos.copy(), "cell": cell.copy(), "pbc": pbc.copy(),
                    "numbers": numbers.copy(), "edge_index": ei, "edge_shift": sh}
        self.n_neighbor_builds += 1
        return ei, sh

    def reset(self) -> None:
        super().reset()
        self._nl = None

    # ------------------------------------------------------------- calculate
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        from eqtool.physics import compute_outputs

        atoms = self.atoms
        numbers = atoms.get_atomic_numbers().astype(np.int64)
        self.check_elements(numbers)
        pos = np.ascontiguousarray(atoms.get_positions(), dtype=np.float64)  # [N, 3]
        cell = np.asarray(atoms.cell.array, dtype=np.float64)  # [3, 3]
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if not (np.isfinite(pos).all() and np.isfinite(cell).all()):
            raise NonFiniteError("non-finite (NaN/inf) positions or cell", source="structure")
        if "stress" in properties and not pbc.all():
            raise PropertyNotImplementedError(
                "stress needs a cell that is periodic in all three directions")
        # stress rides on the same backward pass: always give it for 3D-periodic cells (MD logs, NPT)
        want_stress = bool(pbc.all())
        ei, sh = self._candidates(pos, cell, pbc, numbers)
        vec = pos[ei[0]] - pos[ei[1]] + sh @ cell  # [E, 3]
        dist = np.linalg.norm(vec, axis=1)  # [E]
        self.min_distance = float(dist.min(initial=np.inf))  # Å, closest pair (blow-up checks)
        n = len(numbers)
        dev, dt = self.device, self.dtype
        base = {
            K.POSITIONS: torch.as_tensor(pos, dtype=dt, device=dev),
            K.ATOMIC_NUMBERS: torch.as_tensor(numbers, device=dev),
            K.BATCH: torch.zeros(n, dtype=torch.long, device=dev),
            K.N_ATOMS: torch.tensor([n], dtype=torch.long, device=dev),
            K.CELL: torch.as_tensor(cell, dtype=dt, device=dev).unsqueeze(0),  # [1, 3, 3]
            K.PBC: torch.as_tensor(pbc, device=dev).unsqueeze(0),  # [1, 3]
        }
        energies, forces, stresses, per_atom = [], [], [], []
        for model, cutoff in zip(self.models, self.cutoffs, strict=True):
            keep = dist < cutoff
            batch = dict(base)
            batch[K.EDGE_INDEX] = torch.as_tensor(ei[:, keep], device=dev)
            batch[K.EDGE_SHIFT] = torch.as_tensor(sh[keep], dtype=dt, device=dev)
            out = compute_outputs(model, batch, forces=True, stress=want_stress, training=False)
            energies.append(float(out[K.ENERGY][0]))
            forces.append(out[K.FORCES].double().cpu().numpy())
            if K.ENERGIES in out:
                per_atom.append(out[K.ENERGIES].double().cpu().numpy())
            if want_stress:
                stresses.append(out[K.STRESS][0].double().cpu().numpy())
        f_all = np.stack(forces)  # [M, N, 3]
        energy = float(np.mean(energies))
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = f_all.mean(axis=0)
        if len(per_atom) == len(self.models):
            self.results["energies"] = np.mean(per_atom, axis=0)
        if want_stress:
            s = np.mean(stresses, axis=0)  # [3, 3]
            self.results["stress"] = s[_VOIGT]
        if len(self.models) > 1:
            self.results["energy_std"] = float(np.std(energies))
            self.results["forces_std"] = f_all.std(axis=0)  # [N, 3]
            self.results["energies_committee"] = np.asarray(energies)

    def max_force_std(self) -> float:
        """Largest per-atom committee force spread ``max_i |std(F_i)|`` (eV/Å); 0 for one model."""
        std = self.results.get("forces_std")
        return 0.0 if std is None else float(np.linalg.norm(std, axis=1).max(initial=0.0))


def _plugins() -> set:
    """ASE >= 3.26 plugin objects (``ase._4.plugins``); empty on ASE versions without them."""
    try:
        from ase._4.plugins.plugin import CalculatorPlugin
    except ImportError:  # older/newer ASE without the experimental plugin API
        return set()
    return {CalculatorPlugin("eqtool", implementation="eqtool.calculator.EqCalculator",
                             citation="eqtool: E(3)-equivariant potentials (EqCalculator)")}


__ase_plugins__ = _plugins()

