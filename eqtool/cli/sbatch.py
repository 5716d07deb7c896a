"""``eqtool sbatch``: write and submit a SLURM array job for an eqtool batch command."""

from __future__ import annotations

from pathlib import Path

import typer

from eqtool.errors import EqtoolError

__all__ = ["sbatch", "CONTEXT"]

# click context settings of the command (it passes an eqtool command line through)
CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def _check_command(command: str, args: list[str]):
    """Parse ``eqtool COMMAND ARGS`` without running it; return its parameters."""
    from eqtool.cli.main import build_app
    from eqtool.jobs.sbatch import ARRAY_COMMANDS

    if command not in ARRAY_COMMANDS:
        hint = " (for training use recipes/slurm/train-multinode.sbatch)" if command == "train" else ""
        raise EqtoolError(f"can run {', '.join(ARRAY_COMMANDS)} as an array job, not {command!r}{hint}",
                          source="eqtool sbatch")
    group = typer.main.get_command(build_app())
    try:
        ctx = group.commands[command].make_context(command, list(args))
    except Exception as e:  # click's exceptions (Typer may ship its own copy of click)
        if hasattr(e, "format_message"):
            raise EqtoolError(f"bad command line: {e.format_message()}", source=f"eqtool {command}") from None
        if type(e).__name__ == "Exit":
            raise EqtoolError("give the command's arguments, not --help", f"eqtool {command}") from None
        raise
    if ctx.params.get("shard") is not None:
        raise EqtoolError("leave --shard out: each array task takes its shard from SLURM_ARRAY_TASK_ID",
                          source=f"eqtool {command}")
    return ctx.params


def sbatch(
    ctx: typer.Context,
    array: int = typer.Option(..., "--array", "-a", help="Number of array tasks (shards)."),
    partition: str | None = typer.Option(None, "--partition", "-p", help="SLURM partition."),
    time: str | None = typer.Option(None, "--time", "-t", help="Time limit per task: [D-]HH:MM:SS."),
    cpus_per_task: int = typer.Option(1, "--cpus-per-task", "-c", help="CPU cores per task (torch threads)."),
    mem: str | None = typer.Option(None, "--mem", help="Memory per task, e.g. 4G."),
    gpus: int | None = typer.Option(None, "--gpus", help="GPUs per task."),
    job_name: str | None = typer.Option(None, "--job-name", "-J", help="Job name (default eqtool-COMMAND)."),
    script: Path | None = typer.Option(None, "--script", help="Where to write the job script "
                                       "(default: OUT's name with .sbatch)."),
    log_dir: str = typer.Option(".", "--log-dir", help="Folder of the task logs NAME-JOB_TASK.out."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the job script; write and submit nothing."),
    wait: bool = typer.Option(False, "--wait", help="Return only when every array task has ended."),
) -> None:
    """Submit an eqtool command (relax, md, predict) as a SLURM array job of --array shards.

    Everything after `--` is the eqtool command line. Every array task runs one shard of the
    inputs (found from SLURM_ARRAY_TASK_ID) and skips what an earlier submission finished.
    Prints the job id and the `eqtool data merge` command to run when the job is done.

    Example: eqtool sbatch --array 4 --time 2:00:00 -- relax in.extxyz --model cu-emt --out relaxed.extxyz
    """
    import shlex

    from eqtool.io.atomic import atomic_write
    from eqtool.jobs.run import check_shard_output
    from eqtool.jobs.sbatch import JobSpec, render_script, sbatch_binary, submit

    argv = list(ctx.args)
    if not argv:
        raise EqtoolError("give the eqtool command to run, e.g. -- relax in.extxyz --model cu-emt "
                          "--out relaxed.extxyz", source="eqtool sbatch")
    command, args = argv[0], argv[1:]
    params = _check_command(command, args)
    spec = JobSpec(array=array, partition=partition, time=time, cpus_per_task=cpus_per_task, mem=mem,
                   gpus=gpus, job_name=job_name, log_dir=log_dir).check()
    out = Path(params["out"])
    if command == "md":  # md shards collect each structure's final frame in extxyz beside the trajectories
        out = out.with_suffix(".extxyz")
    check_shard_output(out)
    if script is None:
        script = out.with_name(out.stem + ".sbatch")
    prefix, suffix = str(out.parent / f"{out.stem}.shard-"), f"-of-{array}{out.suffix}"
    merge = f"eqtool data merge {shlex.quote(str(out))} {shlex.quote(prefix)}*{shlex.quote(suffix)}"
    text = render_script(command, args, spec, merge, script_name=str(script))
    if dry_run:
        print(text, end="")
        return
    sbatch_binary()  # before anything is written
    if not Path(log_dir).is_dir():
        raise EqtoolError("log folder does not exist", source=f"--log-dir {log_dir}")
    with atomic_write(script) as fh:
        fh.write(text)
    job_id = submit(script, wait=wait)
    print(f"submitted job {job_id}: {array} array task(s) of eqtool {command} (script {script})")
    print(f"when it is done: {merge}")
