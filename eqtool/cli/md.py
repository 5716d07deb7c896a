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
    inputs: list[str] = typer.Argument(..., metavar="INPUT...",
                                       help="Start structure (first frame); several with --shard."),
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
    shard: str | None = typer.Option(None, "--shard", metavar="I/N",
                                     help="One MD per structure (each frame of each INPUT) for shard I of N "
                                          "(0-based): OUT.K.h5 per structure, final frames in "
                                          "OUT.shard-I-of-N.extxyz with a manifest. Default inside a SLURM "
                                          "array job: the array task's shard."),
) -> None:
    """Run molecular dynamics with a trained potential; a killed run continues with --restart.

    Writes the trajectory (positions, velocities, energies, forces), a CSV log (time ps, Epot,
    Ekin, Etot eV, T K, P GPa) and an energy/temperature plot. Exit code 3 if the run stopped
    early (the system blew up, or the committee uncertainty passed --max-uncertainty). With
    --shard (or in a SLURM array job) every structure gets its own run; see docs/cluster.md.

    Example: eqtool md cu.extxyz --model cu-emt --ensemble nvt -T 600 --timestep 2 --steps 5000 --out traj.h5
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from eqtool.calculator import EqCalculator
    from eqtool.errors import EqtoolError
    from eqtool.io.atomic import _check_folder
    from eqtool.jobs.shard import resolve_shard
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
    part = resolve_shard(shard)
    if part is not None:
        for flag, given in (("--restart", restart), ("--log", log is not None), ("--plot", plot is not None)):
            if given:
                raise EqtoolError("not with --shard: a sharded run names each structure's files from --out "
                                  "and a rerun continues where it stopped", source=flag)
        _check_folder(out)
        calc = EqCalculator(model=model if len(model) > 1 else model[0], device=device, dtype=dtype)
        structures = read_atoms(inputs)
        for atoms in structures:
            calc.check_elements(atoms.get_atomic_numbers(), source=atoms.info["source"])
        _md_shard(structures, calc, cfg, part, out, inputs, model, dtype, overwrite, Console(stderr=True))
        return
    if len(inputs) != 1:
        raise EqtoolError(f"got {len(inputs)} inputs; give one start structure, or --shard I/N to run one MD "
                          "per structure", source="INPUT")
    input = inputs[0]
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


def _structure_path(out: Path, k: int, suffix: str | None = None) -> Path:
    """Files of structure ``k`` in a sharded run: ``traj.h5`` -> ``traj.7.h5`` (``.csv``, ``.png``)."""
    return out.with_name(f"{out.stem}.{k}{out.suffix if suffix is None else suffix}")


def _md_shard(structures, calc, cfg, part, out: Path, inputs, model, dtype, overwrite, console) -> None:
    """One MD per structure of shard ``part``; each finished run appends its final frame to the output."""
    from dataclasses import asdict

    from eqtool.errors import EqtoolError
    from eqtool.io.ase import _extxyz_frame, graph_from_atoms
    from eqtool.jobs.run import prepare_shard
    from eqtool.sim.md import plot_log, run_md

    options = {**asdict(cfg), "dtype": dtype}
    said: list[str] = []
    plan = prepare_shard("md", out.with_suffix(".extxyz"), part, inputs, model, options,
                         [len(a) for a in structures], log=said.append)
    if not plan.exists and not overwrite:
        taken = [p for k in plan.todo for p in (_structure_path(out, k),) if p.exists()]
        if taken:
            raise EqtoolError("already exists and is not from this shard run; use --overwrite to replace it",
                              source=str(taken[0]))
    for line in said:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    with plan.start() as writer:
        for k in plan.todo:
            traj, log = _structure_path(out, k), _structure_path(out, k, ".csv")
            for path in (traj, log):  # a structure that was in flight when the task was killed starts again
                path.unlink(missing_ok=True)
            res = run_md(structures[k], calc, cfg, trajectory=traj, log=log,
                         attrs={"model": ",".join(model), "input": structures[k].info["source"]})
            plot_log(log, _structure_path(out, k, ".png"), title=f"structure {k} | {cfg.ensemble.upper()}")
            final = _final_frame(res, structures[k], graph_from_atoms)
            final.info.update(md_steps=int(res.step), md_trajectory=traj.name)
            if res.stopped:
                final.info["md_stopped"] = res.stopped
            writer.commit([(k, _extxyz_frame(final), {"stopped": res.stopped})])
            plan.done[k] = {"stopped": res.stopped}
    stopped = [k for k in plan.indices if plan.done[k].get("stopped")]
    console.print(f"shard {part}: {len(plan.todo)} run(s) now, {len(plan.indices) - len(plan.todo)} skipped "
                  f"(done before); final frames in {plan.output}", markup=False, highlight=False,
                  soft_wrap=True)
    if stopped:
        console.print(f"md stopped early for input index {', '.join(map(str, stopped[:10]))}",
                      markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_STOPPED)


def _final_frame(res, start, graph_from_atoms):
    """The last state with its energy, forces (and stress); the start structure if the run blew up."""
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = res.atoms
    if not np.isfinite(atoms.positions).all():
        graph = graph_from_atoms(start, start.info["source"])
    else:
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(apply_constraint=False)}
        if bool(np.all(atoms.pbc)):
            results["stress"] = atoms.get_stress()
        snap = atoms.copy()
        snap.calc = SinglePointCalculator(snap, **results)
        graph = graph_from_atoms(snap, start.info["source"])
    graph.info.pop("source", None)
    return graph
