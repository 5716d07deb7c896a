"""Molecular dynamics with ASE integrators, restartable trajectories, a CSV log and a plot.

Units: timestep fs, temperature K, pressure GPa (converted with ``ase.units.GPa`` to eV/Å³),
time ps, energies eV, velocities in trajectories Å/fs.

Integrators (ASE): NVE ``VelocityVerlet``; NVT ``Langevin`` / ``NoseHooverChainNVT`` /
``NVTBerendsen``; NPT (isotropic) ``LangevinBAOAB`` / ``IsotropicMTKNPT`` (Nosé-Hoover chain +
MTK barostat) / ``NPTBerendsen``. Initial velocities: Maxwell-Boltzmann (``thermalize_momenta``)
at ``temperature_k`` from ``numpy.random.default_rng(seed)``, total momentum removed.

Restart: positions, velocities, cell and step of the last complete trajectory frame are read
back and the run continues to ``steps`` total; thermostat/barostat internal variables start
afresh and the Langevin noise is reseeded from ``(seed, step)``, so a restarted run is a valid
continuation, not a bit-identical replay of an uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from eqtool.errors import EqtoolError

__all__ = ["MDConfig", "MDResult", "run_md", "make_integrator", "plot_log", "read_log", "ENSEMBLES",
           "THERMOSTATS", "LOG_COLUMNS"]

ENSEMBLES = ("nve", "nvt", "npt")
THERMOSTATS = ("langevin", "nose-hoover", "berendsen")
LOG_COLUMNS = ("step", "time_ps", "epot_eV", "ekin_eV", "etot_eV", "temperature_K", "pressure_GPa",
               "volume_A3", "force_std_max_eV_A")


@dataclass(frozen=True)
class MDConfig:
    """Settings of one MD run (all validated by :meth:`validate`).

    Attributes:
        ensemble: ``"nve"``, ``"nvt"`` or ``"npt"`` (isotropic cell fluctuations).
        thermostat: ``"langevin"``, ``"nose-hoover"`` or ``"berendsen"`` (NVT/NPT only).
        temperature_k: target (NVT/NPT) and initial-velocity (all) temperature, K.
        pressure_gpa: NPT target pressure, GPa.
        timestep_fs: fs.
        steps: total MD steps (a restart continues up to this number).
        interval: write a frame and a log row every ``interval`` steps.
        seed: velocities and Langevin noise.
        friction_per_fs: Langevin friction, 1/fs.
        tdamp_fs: Nosé-Hoover / Berendsen thermostat time constant, fs.
        pdamp_fs: barostat time constant, fs.
        compressibility_per_gpa: Berendsen barostat compressibility, 1/GPa.
        max_uncertainty: stop when the committee force spread ``max_i |std F_i|`` passes this
            (eV/Å); needs a committee.
        min_distance: stop ("blew up") when two atoms come closer than this, Å.
    """

    ensemble: str = "nve"
    thermostat: str = "langevin"
    temperature_k: float = 300.0
    pressure_gpa: float = 0.0
    timestep_fs: float = 1.0
    steps: int = 1000
    interval: int = 10
    seed: int = 0
    friction_per_fs: float = 0.01
    tdamp_fs: float = 100.0
    pdamp_fs: float = 1000.0
    compressibility_per_gpa: float = 0.01
    max_uncertainty: float | None = None
    min_distance: float = 0.5

    def validate(self) -> MDConfig:
        """Return self, or raise :class:`EqtoolError` naming the bad option."""
        def positive(name, value, opt):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise EqtoolError(f"must be a positive number, got {value!r}", source=opt)

        if self.ensemble not in ENSEMBLES:
            raise EqtoolError(f"unknown ensemble {self.ensemble!r}; choose one of {', '.join(ENSEMBLES)}",
                              source="--ensemble")
        if self.thermostat not in THERMOSTATS:
            raise EqtoolError(f"unknown thermostat {self.thermostat!r}; choose one of "
                              f"{', '.join(THERMOSTATS)}", source="--thermostat")
        if not (math.isfinite(self.temperature_k) and self.temperature_k >= 0):
            raise EqtoolError(f"must be >= 0 K, got {self.temperature_k!r}", source="--temperature")
        if self.ensemble != "nve" and self.temperature_k <= 0:
            raise EqtoolError(f"{self.ensemble.upper()} needs a temperature > 0 K", source="--temperature")
        positive("timestep", self.timestep_fs, "--timestep")
        if self.timestep_fs > 20:
            raise EqtoolError(f"{self.timestep_fs} fs is far too long for atomistic MD (use 0.5-5 fs)",
                              source="--timestep")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise EqtoolError(f"must be an integer >= 0, got {self.steps!r}", source="--steps")
        if not isinstance(self.interval, int) or self.interval < 1:
            raise EqtoolError(f"must be an integer >= 1, got {self.interval!r}", source="--interval")
        if not math.isfinite(self.pressure_gpa):
            raise EqtoolError(f"must be a finite number of GPa, got {self.pressure_gpa!r}",
                              source="--pressure")
        if self.pressure_gpa != 0 and self.ensemble != "npt":
            raise EqtoolError("a target pressure needs --ensemble npt", source="--pressure")
        positive("friction", self.friction_per_fs, "--friction")
        positive("tdamp", self.tdamp_fs, "--tdamp")
        positive("pdamp", self.pdamp_fs, "--pdamp")
        positive("compressibility", self.compressibility_per_gpa, "compressibility")
        if self.max_uncertainty is not None:
            positive("max_uncertainty", self.max_uncertainty, "--max-uncertainty")
        if not (math.isfinite(self.min_distance) and self.min_distance >= 0):
            raise EqtoolError(f"must be >= 0 Å, got {self.min_distance!r}", source="min_distance")
        return self


@dataclass
class MDResult:
    """What :func:`run_md` did.

    Attributes:
        atoms: the final state (positions, momenta, cell).
        start_step: step the run started from (0, or the restart frame's step).
        step: last step reached.
        stopped: None if all steps ran, else the reason (blow-up, uncertainty).
        records: log rows (dicts with :data:`LOG_COLUMNS`) written by this call.
        frames_written: trajectory frames written by this call.
        wall_s: wall time of the MD loop, s.
    """

    atoms: object
    start_step: int
    step: int
    stopped: str | None = None
    records: list = field(default_factory=list)
    frames_written: int = 0
    wall_s: float = 0.0
    timestep_fs: float = 0.0

    @property
    def ns_per_day(self) -> float:
        """Simulated ns per wall-clock day of this call."""
        ns = (self.step - self.start_step) * self.timestep_fs * 1e-6
        return ns / self.wall_s * 86400.0 if self.wall_s > 0 else 0.0


class _Stop(Exception):
    """Raised inside the MD loop to stop early.

    Args:
        reason: the message.
        keep: write the current state as a frame (it is valid, e.g. an uncertain structure).
    """

    def __init__(self, reason: str, keep: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.keep = keep


def make_integrator(atoms, cfg: MDConfig, rng: np.random.Generator):
    """The ASE integrator for ``cfg`` acting on ``atoms`` (which must have a calculator)."""
    from ase import units

    dt = cfg.timestep_fs * units.fs
    T = cfg.temperature_k
    if cfg.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if cfg.ensemble == "nvt":
        if cfg.thermostat == "langevin":
            from ase.md.langevin import Langevin

            return Langevin(atoms, timestep=dt, temperature_K=T, friction=cfg.friction_per_fs / units.fs,
                            fixcm=False, rng=rng)
        if cfg.thermostat == "nose-hoover":
            from ase.md.nose_hoover_chain import NoseHooverChainNVT

            return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=T, tdamp=cfg.tdamp_fs * units.fs)
        from ase.md.nvtberendsen import NVTBerendsen

        return NVTBerendsen(atoms, timestep=dt, temperature_K=T, taut=cfg.tdamp_fs * units.fs, fixcm=False)
    pressure = cfg.pressure_gpa * units.GPa  # eV/Å³
    if cfg.thermostat == "langevin":
        import warnings

        from ase.md.langevinbaoab import LangevinBAOAB

        with warnings.catch_warnings():  # ASE announces its P_mass heuristic (from P_tau = pdamp)
            warnings.filterwarnings("ignore", message="Using heuristic P_mass")
            return LangevinBAOAB(atoms, timestep=dt, temperature_K=T, externalstress=-pressure,
                                 hydrostatic=True, T_tau=1.0 / cfg.friction_per_fs * units.fs,
                                 P_tau=cfg.pdamp_fs * units.fs, rng=rng)
    if cfg.thermostat == "nose-hoover":
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        if atoms.constraints:
            raise EqtoolError("NPT with the Nosé-Hoover/MTK integrator does not support constraints (fixed "
                              "atoms); use --thermostat langevin or berendsen", source="--thermostat")
        return IsotropicMTKNPT(atoms, timestep=dt, temperature_K=T, pressure_au=pressure,
                               tdamp=cfg.tdamp_fs * units.fs, pdamp=cfg.pdamp_fs * units.fs)
    from ase.md.nptberendsen import NPTBerendsen

    return NPTBerendsen(atoms, timestep=dt, temperature_K=T, pressure_au=pressure,
                        taut=cfg.tdamp_fs * units.fs, taup=cfg.pdamp_fs * units.fs,
                        compressibility_au=cfg.compressibility_per_gpa / units.GPa, fixcm=False)


# ------------------------------------------------------------------------------------ logging
def _record(atoms, step: int, cfg: MDConfig, calc) -> dict:
    from ase import units

    epot = float(atoms.get_potential_energy())
    ekin = float(atoms.get_kinetic_energy())
    periodic = bool(np.all(atoms.pbc))
    pressure = volume = float("nan")
    if periodic:
        stress = atoms.get_stress(include_ideal_gas=True)  # Voigt, eV/Å³
        pressure = float(-stress[:3].mean() / units.GPa)
        volume = float(atoms.get_volume())
    std = calc.max_force_std() if getattr(calc, "committee_size", 1) > 1 else float("nan")
    return {"step": int(step), "time_ps": step * cfg.timestep_fs * 1e-3, "epot_eV": epot, "ekin_eV": ekin,
            "etot_eV": epot + ekin, "temperature_K": float(atoms.get_temperature()), "pressure_GPa": pressure,
            "volume_A3": volume, "force_std_max_eV_A": std}


def read_log(path: str | os.PathLike) -> list[dict]:
    """Rows of an md CSV log as dicts of floats (``step`` as int)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                rows.append({k: (int(v) if k == "step" else float(v)) for k, v in row.items()})
            except (TypeError, ValueError):
                break  # a row cut short by a killed run
    return rows


def _open_log(path: Path, keep_until: int | None):
    """Open the CSV log for appending; on restart keep only rows up to ``keep_until``.

    Returns the open file and whether the row for ``keep_until`` itself is there (a run killed
    between committing a frame and logging it has the frame but not the row)."""
    from eqtool.io.atomic import atomic_write

    rows = read_log(path) if keep_until is not None and path.is_file() else []
    rows = [r for r in rows if r["step"] <= (keep_until if keep_until is not None else -1)]
    with atomic_write(path, newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k, float("nan"))) for k in LOG_COLUMNS})
    has_last = bool(rows) and rows[-1]["step"] == keep_until
    return open(path, "a", newline="", encoding="utf-8"), has_last


def _fmt(v) -> str:
    return str(v) if isinstance(v, int) else repr(float(v))


def plot_log(log_path: str | os.PathLike, png_path: str | os.PathLike, title: str = "") -> Path:
    """Energies and temperature against time from an md CSV log, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from eqtool.io.atomic import atomic_path

    rows = read_log(log_path)
    t = np.array([r["time_ps"] for r in rows])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for key, label in (("epot_eV", "potential"), ("etot_eV", "total")):
        y = np.array([r[key] for r in rows])
        ax1.plot(t, y - (y[0] if len(y) else 0.0), label=label)
    ax1.set_ylabel("energy - initial (eV)")
    ax1.legend()
    ax2.plot(t, [r["temperature_K"] for r in rows], color="tab:red")
    ax2.set_ylabel("temperature (K)")
    ax2.set_xlabel("time (ps)")
    if title:
        ax1.set_title(title)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(png_path)


# ---------------------------------------------------------------------------------------- run
def _frame(atoms, step: int, cfg: MDConfig):
    from ase import units

    from eqtool.sim.trajectory import Frame

    periodic = bool(np.all(atoms.pbc))
    return Frame(
        step=int(step), time_ps=step * cfg.timestep_fs * 1e-3, positions=atoms.get_positions(),
        numbers=atoms.get_atomic_numbers(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy(),
        velocities=atoms.get_velocities() * units.fs, energy=float(atoms.get_potential_energy()),
        forces=atoms.get_forces(apply_constraint=False),
        stress=atoms.get_stress(voigt=False) if periodic else None,
        kinetic_energy=float(atoms.get_kinetic_energy()), temperature=float(atoms.get_temperature()))


def _restore(atoms, frame, source: str) -> None:
    from ase import units

    if len(frame.numbers) != len(atoms) or not np.array_equal(frame.numbers, atoms.get_atomic_numbers()):
        raise EqtoolError(f"the trajectory's atoms ({len(frame.numbers)}) do not match the input structure "
                          f"({len(atoms)}); restart with the INPUT the run started from", source=source)
    atoms.set_cell(frame.cell, scale_atoms=False)
    atoms.pbc = frame.pbc
    atoms.set_positions(frame.positions, apply_constraint=False)
    atoms.set_velocities(np.asarray(frame.velocities) / units.fs)


def _initial_velocities(atoms, cfg: MDConfig) -> None:
    from ase.md import velocitydistribution as vd

    if cfg.temperature_k > 0:
        rng = np.random.default_rng(cfg.seed)
        if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
            vd.thermalize_momenta(atoms, temperature_K=cfg.temperature_k, rng=rng)
        else:
            vd.MaxwellBoltzmannDistribution(atoms, temperature_K=cfg.temperature_k, rng=rng)
        vd.Stationary(atoms)  # zero total momentum (temperature kept)
    else:
        atoms.set_momenta(np.zeros((len(atoms), 3)))


def _min_distance(atoms, calc, threshold: float) -> float:
    """Closest pair distance (Å): from an EqCalculator's last call, else a neighbour list."""
    if hasattr(calc, "min_distance"):
        return float(calc.min_distance)
    if threshold <= 0 or len(atoms) < 2:
        return math.inf
    from eqtool.data.neighbors import neighbor_list

    ei, sh = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, threshold)
    if ei.shape[1] == 0:
        return math.inf
    vec = atoms.positions[ei[0]] - atoms.positions[ei[1]] + sh @ atoms.cell.array
    return float(np.linalg.norm(vec, axis=1).min())


def _check(atoms, calc, cfg: MDConfig) -> None:
    """Raise _Stop if the state blew up or the committee is too uncertain."""
    if not np.isfinite(atoms.positions).all():
        raise _Stop("non-finite (NaN/inf) positions: the simulation blew up")
    energy = calc.results.get("energy", 0.0)
    forces = calc.results.get("forces")
    if not math.isfinite(energy) or (forces is not None and not np.isfinite(forces).all()):
        raise _Stop("non-finite energy or forces: the simulation blew up")
    dmin = _min_distance(atoms, calc, cfg.min_distance)
    if dmin < cfg.min_distance:
        raise _Stop(f"two atoms are {dmin:.3f} Å apart (< {cfg.min_distance} Å): the simulation blew up")
    if cfg.max_uncertainty is not None:
        std = calc.max_force_std()
        if std > cfg.max_uncertainty:
            raise _Stop(f"committee force uncertainty {std:.3f} eV/Å passed --max-uncertainty "
                        f"{cfg.max_uncertainty} eV/Å", keep=True)


def run_md(atoms, model, cfg: MDConfig, trajectory: str | os.PathLike | None = None,
           log: str | os.PathLike | None = None, restart: bool = False,
           progress: Callable[[int, int], None] | None = None, attrs: dict | None = None) -> MDResult:
    """Run MD on a copy of ``atoms`` with ``model``.

    Args:
        atoms: ``ase.Atoms`` start structure (its constraints are kept).
        model: an ASE calculator, or anything :class:`~eqtool.calculator.EqCalculator` takes.
        cfg: :class:`MDConfig`.
        trajectory: ``.h5`` (eqtool HDF5) or ``.extxyz`` path, or None for no trajectory.
        log: CSV log path (:data:`LOG_COLUMNS`), or None.
        restart: continue from the last complete frame of ``trajectory`` (which must be given);
            if it has no complete frame yet, start from ``atoms``.
        progress: called as ``progress(step, cfg.steps)`` after every step.
        attrs: extra root attributes for a new HDF5 trajectory.

    Returns:
        :class:`MDResult`; ``stopped`` says why a run ended early.

    Raises:
        EqtoolError: bad options, unsupported elements, a trajectory that does not match
            ``atoms`` on restart.
    """
    from eqtool.sim.relax import get_calculator
    from eqtool.sim.trajectory import open_trajectory, read_frames

    cfg.validate()
    source = str(atoms.info.get("source", "structure"))
    periodic = bool(np.all(atoms.pbc))
    if cfg.ensemble == "npt" and not periodic:
        raise EqtoolError("NPT needs a cell periodic in all three directions", source=source)
    calc = get_calculator(model)
    if cfg.max_uncertainty is not None and getattr(calc, "committee_size", 1) < 2:
        raise EqtoolError("needs a committee of models (give --model several times)",
                          source="--max-uncertainty")
    if hasattr(calc, "check_elements"):
        calc.check_elements(atoms.get_atomic_numbers(), source=source)
    if restart and trajectory is None:
        raise EqtoolError("restart needs the trajectory to continue", source="--restart")
    atoms = atoms.copy()
    atoms.calc = calc
    start = 0
    last = None
    if restart and Path(trajectory).is_file():
        frames = read_frames(trajectory, last_only=True)
        last = frames[-1] if frames else None
    if last is not None:
        _restore(atoms, last, str(trajectory))
        start = int(last.step)
    else:
        _initial_velocities(atoms, cfg)
    try:  # before any file is opened: ASE refuses some set-ups (e.g. constraints)
        dyn = make_integrator(atoms, cfg, np.random.default_rng([cfg.seed, start]))
    except NotImplementedError as e:
        raise EqtoolError(f"the {cfg.ensemble}/{cfg.thermostat} integrator cannot run this system: {e}",
                          source=source) from None

    writer = None
    if trajectory is not None:
        writer = open_trajectory(trajectory, append=last is not None, periodic=periodic,
                                 attrs={"model": "", **dict(attrs or {}), "md_config": asdict(cfg)})
    log_fh, log_has_start = _open_log(Path(log), start if last is not None else None) if log is not None \
        else (None, True)
    log_w = csv.DictWriter(log_fh, fieldnames=LOG_COLUMNS) if log_fh is not None else None
    result = MDResult(atoms=atoms, start_step=start, step=start, timestep_fs=cfg.timestep_fs)
    from eqtool.calculator import NonFiniteError

    def emit(step: int, write_frame: bool = True) -> None:
        rec = _record(atoms, step, cfg, calc)
        result.records.append(rec)
        if writer is not None and write_frame:  # the frame first: the trajectory is what a restart reads
            writer.append(_frame(atoms, step, cfg))
            result.frames_written += 1
        if log_w is not None:
            log_w.writerow({k: _fmt(rec[k]) for k in LOG_COLUMNS})
            log_fh.flush()

    t0 = time.perf_counter()
    try:
        step = start
        try:
            atoms.get_forces()
            if last is None:
                emit(0)
            elif not log_has_start:
                emit(start, write_frame=False)  # killed after the frame was committed, before its log row
            _check(atoms, calc, cfg)
            for k, _ in enumerate(dyn.irun(max(cfg.steps - start, 0))):
                if k == 0:
                    continue  # irun yields once before the first step
                step = start + k
                result.step = step
                _check(atoms, calc, cfg)
                if step % cfg.interval == 0 or step == cfg.steps:
                    emit(step)
                if progress is not None:
                    progress(step, cfg.steps)
        except NonFiniteError:
            result.stopped = f"step {step + 1}: non-finite (NaN/inf) positions: the simulation blew up"
        except _Stop as stop:
            result.stopped = f"step {step}: {stop.reason}"
            if stop.keep and not (result.records and result.records[-1]["step"] == step):
                emit(step)  # keep the uncertain structure: it is the one to label next
    finally:
        result.wall_s = time.perf_counter() - t0
        if writer is not None:
            writer.close()
        if log_fh is not None:
            log_fh.close()
    return result
