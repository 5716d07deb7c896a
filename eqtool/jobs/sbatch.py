"""SLURM array job scripts for eqtool batch commands: render from a template, submit with ``sbatch``.

The script runs the same eqtool command line in every array task; each task finds its shard from
``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` (see :mod:`eqtool.jobs.shard`), writes its own
output and manifest, and skips finished structures when the job is submitted again.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eqtool.errors import EqtoolError

__all__ = ["ARRAY_COMMANDS", "JobSpec", "render_script", "submit", "sbatch_binary"]

ARRAY_COMMANDS = ("relax", "md", "predict")

TEMPLATE = """#!/bin/bash
# SLURM array job written by `eqtool sbatch` (eqtool {version}); edit freely and submit with
#   sbatch {script_name}
# Each array task runs one shard of the inputs: eqtool reads SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT.
# Submitting again skips the structures that are finished; afterwards:
#   {merge}
#SBATCH --job-name={job_name}
#SBATCH --array=0-{last}
#SBATCH --ntasks=1
#SBATCH --cpus-per-task={cpus}
#SBATCH --output={log}
#SBATCH --chdir={workdir}
{optional}
set -euo pipefail
export OMP_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}" MKL_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}"
EQTOOL=({launcher})
echo "eqtool {command}: task ${{SLURM_ARRAY_TASK_ID:-?}} of ${{SLURM_ARRAY_TASK_COUNT:-?}} on $(hostname)"
"${{EQTOOL[@]}}" {argv}
"""

_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class JobSpec:
    """Resources of the array job (SLURM's units: ``time`` ``[D-]HH:MM:SS`` or minutes, ``mem`` per task).

    ``launcher`` is the command that runs eqtool in the job; default: this Python with
    ``-m eqtool.cli.main``, so the job uses the same installation as the submitter.
    """

    array: int
    partition: str | None = None
    time: str | None = None
    cpus_per_task: int = 1
    mem: str | None = None
    gpus: int | None = None
    job_name: str | None = None
    log_dir: str = "."
    launcher: tuple[str, ...] = ()

    def check(self) -> JobSpec:
        if self.array < 1:
            raise EqtoolError(f"must be >= 1 array tasks, got {self.array}", source="--array")
        if self.cpus_per_task < 1:
            raise EqtoolError(f"must be >= 1, got {self.cpus_per_task}", source="--cpus-per-task")
        if self.time is not None and not _TIME.match(self.time):
            raise EqtoolError(f"expected minutes, HH:MM:SS or D-HH:MM:SS, got {self.time!r}", source="--time")
        if self.mem is not None and not _MEM.match(self.mem):
            raise EqtoolError(f"expected e.g. 4G or 500M, got {self.mem!r}", source="--mem")
        if self.gpus is not None and self.gpus < 0:
            raise EqtoolError(f"must be >= 0, got {self.gpus}", source="--gpus")
        for name, value in (("--partition", self.partition), ("--job-name", self.job_name)):
            if value is not None and not _NAME.match(value):
                raise EqtoolError(f"letters, digits and _.+- only, got {value!r}", source=name)
        return self


def render_script(command: str, args: Sequence[str], spec: JobSpec, merge_hint: str,
                  workdir: str | os.PathLike | None = None, script_name: str = "job.sbatch") -> str:
    """The job script text for ``eqtool COMMAND ARGS...`` as an array of ``spec.array`` tasks."""
    from eqtool import __version__

    spec.check()
    job_name = spec.job_name or f"eqtool-{command}"
    optional = [f"#SBATCH --{key}={value}" for key, value in (
        ("partition", spec.partition), ("time", spec.time), ("mem", spec.mem),
        ("gpus", spec.gpus)) if value is not None]
    launcher = spec.launcher or (sys.executable, "-m", "eqtool.cli.main")
    return TEMPLATE.format(
        version=__version__, script_name=script_name, merge=merge_hint, job_name=job_name,
        last=spec.array - 1, cpus=spec.cpus_per_task,
        log=str(Path(spec.log_dir) / f"{job_name}-%A_%a.out"),
        workdir=str(Path(workdir or os.getcwd()).resolve()), optional="\n".join(optional),
        launcher=" ".join(shlex.quote(a) for a in launcher), command=command,
        argv=" ".join(shlex.quote(a) for a in [command, *args]),
    )


def sbatch_binary() -> str:
    """Path of ``sbatch``; EqtoolError when it is not on PATH."""
    path = shutil.which("sbatch")
    if path is None:
        raise EqtoolError("not found on PATH: is this a SLURM login node? (use --dry-run to only write "
                          "the script)", source="sbatch")
    return path


def submit(script: str | os.PathLike, wait: bool = False) -> str:
    """Submit ``script`` with ``sbatch --parsable``; return the job id.

    With ``wait``, sbatch returns when every array task has ended (its exit code is the
    highest of the tasks').

    Raises:
        EqtoolError: sbatch missing, or sbatch refused the job (its message, one line).
    """
    argv = [sbatch_binary(), "--parsable", *(["--wait"] if wait else []), str(script)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    job_id = proc.stdout.strip().splitlines()[0].split(";")[0] if proc.stdout.strip() else ""
    if not job_id.isdigit():
        message = " ".join((proc.stderr or proc.stdout or f"exit code {proc.returncode}").split())
        raise EqtoolError(f"job not submitted: {message}", source="sbatch")
    if wait and proc.returncode != 0:
        raise EqtoolError(f"job {job_id} ended with failed array tasks (sbatch exit code {proc.returncode}); "
                          "see the task logs, then submit again to finish", source="sbatch")
    return job_id
