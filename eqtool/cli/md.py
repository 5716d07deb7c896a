"""``eqtool md``: molecular dynamics (NVE/NVT/NPT) with a trained potential."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["md", "EXIT_STOPPED"]

EXIT_STOPPED = 3


def _side_path(out: Path, suffix: str) -> Path:
    """``traj.h5`` -> ``traj.csv`` / ``traj.png`` next to it."""
    return out.with_name(out.stem + suffix)


def md(
    input: str = typer.Argument(..., metavar="INPUT", help="Start structure (any format; first frame)."),
    model: list[str] = typer.Option(..., "--model", "-m",
                                    help="Model file or shipped name (e.g. cu-emt); repeat for a committee."),
    ensemble: str = typer.Option("nve", "--ensemble", help="nve, nvt or npt (isotropic)."),
    thermostat: str | None = typer.Option(None, "--thermostat",
                                          help="langevin (default), nose-hoover or berendsen (NVT/NPT)."),
    temperature: float = typer.Option(300.0, "--temperature", "-T",
                                      help="Target / initial-velocity temperature, K."),
    pressure: float = typer.Option(0.0, "--pressure", help="NPT target pressure, GPa."),
    timestep: float = typer.Option(1.0, "--timestep", help="Time step, fs."),
    steps: int = typer.Option(1000, "--steps", help="Total number of MD steps."),
    interval: int = typer.Option(10, "--interval", help="Write a frame and a log row every k steps."),
    out: Path = typer.Option(Path("traj.h5"), "--out", "-o", help="Trajectory: .h5 (eqtool) or .extxyz."),
    log: Path | None = typer.Option(None, "--log", help="CSV log (default: OUT with .csv)."),
    plot: Path | None = typer.Option(None, "--plot", help="Energy/temperature PNG (default: OUT with .png)."),
    restart: bool = typer.Option(False, "--restart", help="Continue from the last complete frame of OUT."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT instead of refusing."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial velocities and the Langevin noise."),
    friction: float = typer.Option(0.01, "--friction", help="Langevin friction, 1/fs."),
    tdamp: float = typer.Option(100.0, "--tdamp", help="Nosé-Hoover/Berendsen thermostat time constant, fs."),
    pdamp: float = typer.Option(1000.0, "--pdamp", help="Barostat time constant, fs."),
    max_uncertainty: float | None = typer.Option(None, "--max-uncertainty",
                                                 help="Stop above this committee force spread, eV/Å."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:1 or auto."),
    dtype: str = typer.Option("float64", "--dtype", help="float64 or float32."),
    threads: int | None = typer.Option(None, "--threads", min=1,
                                       help="CPU threads for torch (small systems: 1 is often fastest)."),
) -> None:
    """Run molecular dynamics with a trained potential; a killed run continues with --restart.

    Writes the trajectory (positions, velocities, energies, forces), a CSV log (time ps, Epot,
    Ekin, Etot eV, T K, P GPa) and an energy/temperature plot. Exit code 3 if the run stopped
    early (the system blew up, or the committee uncertainty passed --max-uncertainty).

    Example: eqtool md cu.extxyz --model cu-emt --ensemble nvt -T 600 --timestep 2 --steps 5000 --out traj.h5
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from eqtool.calculator import EqCalculator
    from eqtool.errors import EqtoolError
    from eqtool.io.atomic import _check_folder
    from eqtool.sim.md import MDConfig, plot_log, run_md
    from eqtool.sim.structures import read_atoms
    from eqtool.sim.trajectory import trajectory_format

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    # every check before any work, so bad input leaves nothing behind
    if thermostat is not None and ensemble.lower() == "nve":
        raise EqtoolError("a thermostat needs --ensemble nvt or npt", source="--thermostat")
    cfg = MDConfig(ensemble=ensemble.lower(), thermostat=(thermostat or "langevin").lower(),
                   temperature_k=temperature, pressure_gpa=pressure, timestep_fs=timestep, steps=steps,
                   interval=interval, seed=seed, friction_per_fs=friction, tdamp_fs=tdamp, pdamp_fs=pdamp,
                   max_uncertainty=max_uncertainty).validate()
    trajectory_format(out)
    log = log or _side_path(out, ".csv")
    plot = plot or _side_path(out, ".png")
    for path in (out, log, plot):
        _check_folder(path)
    if out.is_dir():
        raise EqtoolError("is a folder, expected a trajectory file", source=str(out))
    if out.exists() and not (restart or overwrite):
        raise EqtoolError("already exists; use --restart to continue it or --overwrite to replace it",
                          source=str(out))
    calc = EqCalculator(model=model if len(model) > 1 else model[0], device=device, dtype=dtype)
    atoms = read_atoms([input], index="0")[0]
    calc.check_elements(atoms.get_atomic_numbers(), source=atoms.info["source"])

    console = Console(stderr=True)
    progress = Progress(TextColumn(f"md {cfg.ensemble}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console,
                        disable=not console.is_terminal)
    state = {"t0": None, "s0": None}

    def report(step: int, total: int) -> None:
        import time

        now = time.perf_counter()
        if state["t0"] is None:
            state["t0"], state["s0"] = now, step - 1
        done = step - state["s0"]
        ns_day = done * timestep * 1e-6 / max(now - state["t0"], 1e-9) * 86400.0
        progress.update(task, completed=step, rate=f"{ns_day:.3g} ns/day")

    name = ",".join(model)
    with progress:
        task = progress.add_task("md", total=steps, rate="")
        result = run_md(atoms, calc, cfg, trajectory=out, log=log, restart=restart, progress=report,
                        attrs={"model": name, "input": str(input)})
    plot_log(log, plot, title=f"{Path(input).name} | {name} | {cfg.ensemble.upper()} {cfg.temperature_k:g} K")
    began = f"from step {result.start_step} " if result.start_step else ""
    console.print(f"ran {result.step - result.start_step} steps {began}({result.ns_per_day:.3g} ns/day); "
                  f"{result.frames_written} frame(s) added to {out}; log {log}; plot {plot}",
                  markup=False, highlight=False)
    if result.stopped:
        console.print(f"md stopped early at {result.stopped}", markup=False, highlight=False)
        raise typer.Exit(EXIT_STOPPED)
