"""The host-side structure: :class:`AtomGraph`, one validated system with optional labels.

An ``AtomGraph`` holds numpy arrays (float64 positions and cell), is validated when built, and is
turned into the flat ``dict[str, Tensor]`` that models take by :func:`eqtool.data.batch.collate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eqtool.data import keys as K
from eqtool.errors import EqtoolError

__all__ = ["AtomGraph", "MIN_DISTANCE", "MAX_Z"]

MIN_DISTANCE = 0.1  # Å; closer atoms are rejected as overlapping
MAX_Z = 118


def _label_shape(key: str, n_atoms: int) -> tuple[int, ...] | None:
    """Expected leading shape of a registered label (None = not checked)."""
    level = K.FIELDS[key].level if key in K.FIELDS else None
    if level == "node":
        return (n_atoms,)
    if level == "pair":
        return (n_atoms * n_atoms,)
    return None


@dataclass
class AtomGraph:
    """One atomic system.

    Attributes:
        positions: ``[N, 3]`` float64, Å.
        atomic_numbers: ``[N]`` int64, 1..118.
        cell: ``[3, 3]`` float64, Å, row vectors (zeros for a molecule).
        pbc: ``[3]`` bool.
        labels: registered fields from :data:`eqtool.data.keys.FIELDS` (energy ``[]`` eV, forces
            ``[N, 3]`` eV/Å, stress ``[3, 3]`` eV/Å³ ASE sign, ...) as numpy arrays.
        info: free metadata that is not batched (name, SMILES, source file, ...).
        edge_index: ``[2, E]`` int64 (sender, receiver) or None until :meth:`with_edges`.
        edge_shift: ``[E, 3]`` int64 integer cell shifts or None.
        source: file (and frame) the graph came from, used in error messages.
    """

    positions: np.ndarray
    atomic_numbers: np.ndarray
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    edge_index: np.ndarray | None = None
    edge_shift: np.ndarray | None = None
    source: str | None = None

    def __post_init__(self):
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        self.atomic_numbers = np.asarray(self.atomic_numbers, dtype=np.int64).reshape(-1)
        self.cell = np.asarray(self.cell, dtype=np.float64).reshape(3, 3)
        self.pbc = np.broadcast_to(np.asarray(self.pbc, dtype=bool), (3,)).copy()
        self.labels = {k: np.asarray(v) for k, v in self.labels.items()}
        self.validate()

    # ------------------------------------------------------------------ checks
    def _fail(self, message: str):
        src, where = (self.source or "structure"), None
        if self.source and "@" in self.source:
            src, where = self.source.rsplit("@", 1)
            where = f"frame {where}"
        raise EqtoolError(message, src, where)

    def validate(self, min_distance: float = MIN_DISTANCE) -> None:
        """Raise :class:`EqtoolError` for anything a model cannot use."""
        n = len(self.atomic_numbers)
        if n == 0:
            self._fail("structure has no atoms")
        if len(self.positions) != n:
            self._fail(f"{len(self.positions)} positions for {n} atomic numbers")
        if not np.isfinite(self.positions).all():
            bad = int(np.nonzero(~np.isfinite(self.positions).all(1))[0][0])
            self._fail(f"non-finite (NaN/inf) coordinates for atom {bad}")
        bad_z = (self.atomic_numbers < 1) | (self.atomic_numbers > MAX_Z)
        if bad_z.any():
            self._fail(f"unknown element with atomic number {int(self.atomic_numbers[bad_z][0])}")
        if not np.isfinite(self.cell).all():
            self._fail("non-finite cell")
        if self.pbc.any():
            vol = abs(np.linalg.det(self.cell))
            lengths = np.linalg.norm(self.cell, axis=1)
            if vol < 1e-6 * max(1.0, float(np.prod(lengths))) or (lengths[self.pbc] < 1e-6).any():
                self._fail("zero-volume (degenerate) cell in a periodic structure")
        for key, value in self.labels.items():
            shape = _label_shape(key, n)
            if shape is not None and value.shape[: len(shape)] != shape:
                self._fail(f"label {key!r} has shape {value.shape}, expected leading {shape}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                self._fail(f"label {key!r} contains NaN/inf")
        if n > 1 and min_distance > 0:
            from eqtool.data.neighbors import neighbor_list

            # vesin's cell list is slow for tiny cutoffs: search at >= 1 Å and filter
            ei, sh = neighbor_list(self.positions, self.cell, self.pbc, max(min_distance, 1.0))
            if ei.shape[1]:
                vec = self.positions[ei[0]] - self.positions[ei[1]] + sh @ self.cell
                d = np.linalg.norm(vec, axis=1)
                close = np.nonzero(d < min_distance)[0]
                if len(close):
                    k = close[0]
                    j, i = int(ei[0, k]), int(ei[1, k])
                    self._fail(f"atoms {i} and {j} overlap ({d[k]:.3f} Å apart, minimum {min_distance} Å)")

    # ------------------------------------------------------------- properties
    @property
    def n_atoms(self) -> int:
        return int(len(self.atomic_numbers))

    @property
    def n_edges(self) -> int:
        return 0 if self.edge_index is None else int(self.edge_index.shape[1])

    @property
    def is_periodic(self) -> bool:
        return bool(self.pbc.any())

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.cell))) if self.pbc.all() else 0.0

    # ------------------------------------------------------------ transforms
    def with_edges(self, cutoff: float, neighbor_fn=None) -> AtomGraph:
        """Return a copy with ``edge_index``/``edge_shift`` for ``cutoff`` (Å).

        ``neighbor_fn`` is injected (see :mod:`eqtool.data.neighbors`); default vesin.
        """
        if neighbor_fn is None:
            from eqtool.data.neighbors import neighbor_list as neighbor_fn
        ei, sh = neighbor_fn(self.positions, self.cell, self.pbc, cutoff)
        return self._copy(edge_index=np.asarray(ei, dtype=np.int64),
                          edge_shift=np.asarray(sh, dtype=np.int64))

    def _copy(self, **changes) -> AtomGraph:
        """Shallow copy without re-validation."""
        new = object.__new__(AtomGraph)
        new.__dict__.update(self.__dict__)
        new.labels = dict(self.labels)
        new.info = dict(self.info)
        new.__dict__.update(changes)
        return new

    # ------------------------------------------------------------------- ASE
    @classmethod
    def from_ase(cls, atoms, source: str | None = None) -> AtomGraph:
        """Build from ``ase.Atoms``; labels come from ``atoms.calc`` results, then info/arrays.

        Recognised labels: energy (``energy``/``free_energy``), forces, stress (Voigt-6 or 3x3,
        converted to 3x3), per-atom ``energies``, ``charges``, ``magmoms``.
        """
        labels: dict[str, np.ndarray] = {}
        results = dict(getattr(atoms.calc, "results", {}) or {}) if atoms.calc is not None else {}
        for key in ("energy", "free_energy"):
            if key in atoms.info and K.ENERGY not in labels and np.isscalar(atoms.info[key]):
                labels[K.ENERGY] = np.asarray(float(atoms.info[key]))
        if "energy" in results:
            labels[K.ENERGY] = np.asarray(float(results["energy"]))
        elif "free_energy" in results and K.ENERGY not in labels:
            labels[K.ENERGY] = np.asarray(float(results["free_energy"]))
        for key, lk in (("forces", K.FORCES), ("energies", K.ENERGIES), ("charges", K.CHARGES),
                        ("magmoms", K.MAGMOMS)):
            if key in results:
                labels[lk] = np.asarray(results[key], dtype=np.float64)
            elif key in atoms.arrays:
                labels[lk] = np.asarray(atoms.arrays[key], dtype=np.float64)
        stress = results.get("stress", atoms.info.get("stress"))
        if stress is not None:
            labels[K.STRESS] = _stress_3x3(np.asarray(stress, dtype=np.float64))
        info = {k: v for k, v in atoms.info.items() if k not in ("energy", "free_energy", "stress")}
        return cls(
            positions=atoms.get_positions(), atomic_numbers=atoms.get_atomic_numbers(),
            cell=atoms.cell.array, pbc=atoms.pbc, labels=labels, info=info, source=source,
        )

    def to_ase(self):
        """Return ``ase.Atoms`` with labels attached through a SinglePointCalculator."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(numbers=self.atomic_numbers, positions=self.positions, cell=self.cell,
                      pbc=self.pbc)
        atoms.info.update({k: v for k, v in self.info.items()})
        results = {}
        if K.ENERGY in self.labels:
            results["energy"] = float(self.labels[K.ENERGY])
        if K.FORCES in self.labels:
            results["forces"] = np.array(self.labels[K.FORCES], dtype=np.float64)
        if K.STRESS in self.labels:
            s = np.asarray(self.labels[K.STRESS], dtype=np.float64)
            results["stress"] = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        if K.ENERGIES in self.labels:
            results["energies"] = np.array(self.labels[K.ENERGIES], dtype=np.float64)
        for key in (K.CHARGES, K.MAGMOMS):
            if key in self.labels:
                atoms.arrays[key] = np.array(self.labels[key])
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms


def _stress_3x3(s: np.ndarray) -> np.ndarray:
    """Voigt-6 (xx, yy, zz, yz, xz, xy) or 3x3 or flat-9 stress -> 3x3."""
    if s.shape == (3, 3):
        return s
    if s.size == 9:
        return s.reshape(3, 3)
    if s.size == 6:
        xx, yy, zz, yz, xz, xy = s
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise EqtoolError(f"stress has {s.size} components, expected 6 or 9")
