"""Helpers of the cluster suite: run eqtool from this checkout, poll SLURM jobs (no sacct here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CU_MODEL = os.environ.get("EQTOOL_TEST_CU_MODEL", "cu-emt")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE"}


def job_env() -> dict[str, str]:
    """The environment of commands and jobs: this checkout importable, one thread, no inherited array."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def eqtool(*args, cwd, timeout=600, prefix=()) -> subprocess.CompletedProcess:
    """Run ``eqtool ARGS`` (this checkout, via ``python -m``) in ``cwd``; never raises on exit codes."""
    argv = [*prefix, sys.executable, "-m", "eqtool.cli.main", *map(str, args)]
    return subprocess.run(argv, cwd=cwd, env=job_env(), capture_output=True, text=True, timeout=timeout)


def job_states(job_id: str) -> dict[str, str]:
    """``{array task id (or job id): state}`` from ``scontrol show job`` (no accounting database here)."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    states = {}
    for line in proc.stdout.splitlines():
        task = re.search(r"\bArrayTaskId=(\S+)", line)
        state = re.search(r"\bJobState=(\S+)", line)
        if state:
            states[task.group(1) if task else job_id] = state.group(1)
    return states


def wait_job(job_id: str, n_tasks: int, timeout: float = 300) -> dict[str, str]:
    """Poll until the ``n_tasks`` tasks of ``job_id`` have ended; return their states."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        states = job_states(job_id)
        if len(states) == n_tasks and set(states.values()) <= FINAL:
            return states
        time.sleep(0.2)
    subprocess.run(["scancel", job_id])
    raise AssertionError(f"job {job_id} not done after {timeout} s: {job_states(job_id)}")


def submitted_job(stdout: str) -> str:
    match = re.search(r"submitted job (\d+)", stdout)
    assert match, stdout
    return match.group(1)
