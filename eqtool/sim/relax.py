"""Geometry optimisation with ASE optimisers: positions, or positions + cell (FrechetCellFilter).

Units: energies eV, forces eV/Å, ``fmax`` eV/Å, ``pressure_gpa`` GPa (converted to eV/Å³ with
``ase.units.GPa`` for the filter). ASE constraints on the atoms (``FixAtoms``, ...) are honoured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from eqtool.errors import EqtoolError

__all__ = ["RelaxResult", "relax", "OPTIMIZERS", "get_calculator", "check_relax_options"]

OPTIMIZERS = ("fire", "bfgs", "lbfgs")


@dataclass
class RelaxResult:
    """Outcome of one relaxation.

    Attributes:
        atoms: the relaxed structure; ``atoms.calc`` is a SinglePointCalculator with the final
            energy (eV), forces (eV/Å) and, for 3D-periodic cells, stress (eV/Å³, Voigt).
        converged: True if the optimiser reached ``fmax`` within ``steps``.
        steps: optimiser steps taken.
        initial_energy, final_energy: eV.
        max_force: largest atomic force norm at the end (eV/Å, constraints applied).
        frames: the trajectory (``ase.Atoms`` with results) when requested, else empty.
    """

    atoms: object
    converged: bool
    steps: int
    initial_energy: float
    final_energy: float
    max_force: float
    frames: list = field(default_factory=list)


def get_calculator(model, device="auto", dtype="float64"):
    """``model`` as an :class:`~eqtool.calculator.EqCalculator` (an ASE calculator passes through)."""
    from ase.calculators.calculator import BaseCalculator

    if isinstance(model, BaseCalculator):
        return model
    from eqtool.calculator import EqCalculator

    return EqCalculator(model=model, device=device, dtype=dtype)


def check_relax_options(fmax: float, steps: int, optimizer: str, cell: bool, pressure_gpa: float) -> None:
    """Raise :class:`EqtoolError` for options a relaxation cannot use."""
    if not (isinstance(fmax, (int, float)) and math.isfinite(fmax) and fmax > 0):
        raise EqtoolError(f"must be a positive number of eV/Å, got {fmax!r}", source="--fmax")
    if not isinstance(steps, int) or steps < 0:
        raise EqtoolError(f"must be an integer >= 0, got {steps!r}", source="--steps")
    if optimizer not in OPTIMIZERS:
        raise EqtoolError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}",
                          source="--optimizer")
    if not math.isfinite(pressure_gpa):
        raise EqtoolError(f"must be a finite number of GPa, got {pressure_gpa!r}", source="--pressure")
    if pressure_gpa != 0 and not cell:
        raise EqtoolError("a target pressure needs a cell relaxation (--cell)", source="--pressure")


def _optimizer(name: str, target):
    from ase.optimize import BFGS, FIRE, LBFGS

    cls = {"fire": FIRE, "bfgs": BFGS, "lbfgs": LBFGS}[name]
    return cls(target, logfile=None)


def _snapshot(atoms, stress: bool):
    """A copy of ``atoms`` with its current results frozen in a SinglePointCalculator."""
    from ase.calculators.singlepoint import SinglePointCalculator

    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(apply_constraint=False)}
    if stress:
        results["stress"] = atoms.get_stress()
    snap = atoms.copy()
    snap.calc = SinglePointCalculator(snap, **results)
    return snap


def relax(atoms, model, fmax: float = 0.01, steps: int = 500, optimizer: str = "fire",
          cell: bool = False, pressure_gpa: float = 0.0, trajectory: bool = False,
          callback: Callable[[int], None] | None = None) -> RelaxResult:
    """Relax ``atoms`` (a copy; the input is not changed) with ``model``.

    Args:
        atoms: ``ase.Atoms``; its constraints (e.g. ``FixAtoms``) are respected.
        model: an ASE calculator, or anything :class:`~eqtool.calculator.EqCalculator` takes
            (a shipped name, a model file, an ``nn.Module``, a committee list).
        fmax: convergence threshold on the largest force (eV/Å); with ``cell`` also on the
            cell gradient of the FrechetCellFilter (stress times volume, eV).
        steps: maximum optimiser steps.
        optimizer: ``"fire"``, ``"bfgs"`` or ``"lbfgs"`` (ASE implementations).
        cell: also relax the cell (``ase.filters.FrechetCellFilter``); needs a 3D-periodic cell.
        pressure_gpa: external pressure for the cell relaxation, GPa.
        trajectory: keep every step as a frame in :attr:`RelaxResult.frames`.
        callback: called with the step number after each optimiser step.

    Returns:
        :class:`RelaxResult`.

    Raises:
        EqtoolError: bad options; ``cell=True`` for a structure that is not periodic in 3D.
    """
    from ase import units

    check_relax_options(fmax, steps, optimizer, cell, pressure_gpa)
    calc = get_calculator(model)
    atoms = atoms.copy()
    atoms.calc = calc
    periodic = bool(np.all(atoms.pbc))
    if cell and not periodic:
        raise EqtoolError("a cell relaxation (--cell) needs a cell periodic in all three directions",
                          source=str(atoms.info.get("source", "structure")))
    target = atoms
    if cell:
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(atoms, scalar_pressure=pressure_gpa * units.GPa)
    opt = _optimizer(optimizer, target)
    initial = float(atoms.get_potential_energy())
    frames = []
    if trajectory:
        frames.append(_snapshot(atoms, periodic))

        def record():
            frames.append(_snapshot(atoms, periodic))

        opt.attach(record, interval=1)
    if callback is not None:
        opt.attach(lambda: callback(opt.nsteps), interval=1)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    if trajectory and len(frames) > opt.nsteps + 1:  # ASE calls observers at step 0 too
        frames = frames[1:]
    final = _snapshot(atoms, periodic)
    forces = atoms.get_forces()  # constraints applied: fixed atoms do not count
    return RelaxResult(
        atoms=final, converged=converged, steps=int(opt.nsteps), initial_energy=initial,
        final_energy=float(final.get_potential_energy()),
        max_force=float(np.linalg.norm(forces, axis=1).max(initial=0.0)), frames=frames,
    )
