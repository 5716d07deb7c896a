"""Simulations with eqtool potentials through ASE: relaxations and molecular dynamics.

Functions take ``(atoms, model, ...)``; ``model`` is an ASE calculator or anything
:class:`eqtool.calculator.EqCalculator` accepts (shipped name, model file, ``nn.Module``, list).
See ``docs/simulation.md``.
"""

from eqtool.sim.md import MDConfig, MDResult, run_md
from eqtool.sim.relax import RelaxResult, relax
from eqtool.sim.trajectory import Frame, open_trajectory, read_frames

__all__ = ["relax", "RelaxResult", "run_md", "MDConfig", "MDResult", "Frame", "open_trajectory",
           "read_frames"]
