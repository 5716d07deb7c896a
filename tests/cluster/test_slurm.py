"""Acceptance of issue 9 on a real single-node SLURM: array jobs, a cancelled task, srun DDP, sbatch.

Small rattled Cu cells (4-32 atoms), the shipped ``cu-emt`` in float64, few optimiser steps.
"""

import glob
import json
import subprocess
import time

import numpy as np
import pytest
from slurm_helpers import CU_MODEL, eqtool, submitted_job, wait_job

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("slurm")]

SIZES = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]  # 4, 8, 16, 32 atoms


def _write_cu(path, n, stdev=0.02, sizes=SIZES):
    import ase.io
    from ase.build import bulk

    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * sizes[k % len(sizes)]
        atoms.rattle(stdev, seed=k)
        frames.append(atoms)
    ase.io.write(path, frames)
    return frames


def _manifest_entries(path):
    lines = path.read_text().split("\n")[:-1]  # a half-written last line does not count
    return [json.loads(x) for x in lines[1:]]


def test_array_of_4_relaxes_40_like_one_process(tmp_path):
    import ase.io

    _write_cu(tmp_path / "cu40.extxyz", 40)
    relax = ["relax", "cu40.extxyz", "--model", CU_MODEL, "--dtype", "float64", "--fmax", "0.2",
             "--steps", "10", "--threads", "1"]
    dry = eqtool("sbatch", "--array", "4", "--dry-run", "--", *relax, "--out", "relaxed.extxyz", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert subprocess.run(["bash", "-n"], input=dry.stdout, text=True).returncode == 0
    sub = eqtool("sbatch", "--array", "4", "--", *relax, "--out", "relaxed.extxyz", cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    assert "eqtool data merge relaxed.extxyz relaxed.shard-*-of-4.extxyz" in sub.stdout
    assert (tmp_path / "relaxed.sbatch").read_text() == dry.stdout  # what --dry-run showed is what ran
    job = submitted_job(sub.stdout)
    single = eqtool(*relax, "--out", "single.extxyz", cwd=tmp_path)  # meanwhile, one process
    assert single.returncode == 0, single.stderr
    states = wait_job(job, 4)
    logs = {t: (tmp_path / f"eqtool-relax-{job}_{t}.out").read_text() for t in states}
    assert set(states.values()) == {"COMPLETED"}, (states, logs)
    for t, text in logs.items():
        assert f"shard {t}/4 (from the SLURM array)" in text, text
    merge = eqtool("data", "merge", "relaxed.extxyz", *sorted(glob.glob(str(tmp_path / "relaxed.shard-*"))),
                   cwd=tmp_path)
    assert merge.returncode == 0, merge.stderr
    merged = ase.io.read(tmp_path / "relaxed.extxyz", ":")
    one = ase.io.read(tmp_path / "single.extxyz", ":")
    assert len(merged) == len(one) == 40
    for a, b in zip(merged, one, strict=True):
        assert len(a) == len(b)
        assert abs(a.get_potential_energy() - b.get_potential_energy()) < 1e-8  # eV
        assert np.abs(a.positions - b.positions).max() < 1e-8
        assert a.info["relax_steps"] == b.info["relax_steps"]


def test_cancelled_task_resubmitted_finishes_only_the_missing_structures(tmp_path):
    import ase.io

    frames = _write_cu(tmp_path / "cu12.extxyz", 12, stdev=0.05, sizes=SIZES[:3])
    # slow on purpose (fmax too tight to reach): every structure takes all 20 steps
    argv = ["sbatch", "--array", "2", "--", "relax", "cu12.extxyz", "--model", CU_MODEL, "--fmax", "1e-6",
            "--steps", "20", "--threads", "1", "--out", "r.extxyz"]
    sub = eqtool(*argv, cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    job = submitted_job(sub.stdout)
    manifest = tmp_path / "r.shard-1-of-2.extxyz.manifest.jsonl"
    t0 = time.monotonic()
    while not (manifest.is_file() and len(_manifest_entries(manifest)) >= 1):
        assert time.monotonic() - t0 < 120, "shard 1 never finished a structure"
        time.sleep(0.05)
    subprocess.run(["scancel", f"{job}_1"], check=True)
    states = wait_job(job, 2)
    assert states["1"] == "CANCELLED", states
    header = json.loads(manifest.read_text().split("\n")[0])
    done_before = [e["index"] for e in _manifest_entries(manifest)]
    assert 1 <= len(done_before) < len(header["indices"]), "the cancel came too late to test anything"

    sub = eqtool(*argv, cwd=tmp_path)  # the same command again
    assert sub.returncode == 0, sub.stderr
    job2 = submitted_job(sub.stdout)
    wait_job(job2, 2)
    logs = {t: (tmp_path / f"eqtool-relax-{job2}_{t}.out").read_text() for t in range(2)}
    assert "shard 0/2: 0 relaxed now" in logs[0], logs[0]
    missing = len(header["indices"]) - len(done_before)
    assert f"{len(done_before)} done already" in logs[1] and f"{missing} relaxed now" in logs[1], logs[1]
    entries = _manifest_entries(manifest)
    assert [e["index"] for e in entries] == header["indices"]  # each once, in order

    merge = eqtool("data", "merge", "merged.extxyz", ".", cwd=tmp_path)
    assert merge.returncode == 0, merge.stderr
    merged = ase.io.read(tmp_path / "merged.extxyz", ":")
    assert [len(a) for a in merged] == [len(a) for a in frames]
    for a, start in zip(merged, frames, strict=True):  # every structure once, in input order
        assert np.abs(a.positions - start.positions).max() < 0.5
        assert a.info["relax_steps"] == 20


TINY_RECIPE = """task: potential
data: {path: tiny.extxyz, split: tiny.split.json, batch_size: 4, val_batch_size: 1, num_workers: 0}
model:
  name: mace
  kwargs: {cutoff: 4.0, hidden_irreps: "4x0e+4x1o", max_ell: 1, correlation: 2, num_interactions: 1,
           radial_mlp: [8]}
loss: {energy: 1.0, forces: 10.0, stress: 0.0}
optim: {lr: 0.01, scheduler: none, ema_decay: null}
trainer: {max_epochs: 3, dtype: float64, seed: 0, accelerator: cpu, devices: 1, log_every: 1,
          progress_bar: false}
run_dir: runs/tiny
"""


def test_srun_ddp_equals_one_process_with_doubled_batch(tmp_path):
    """srun -n 2, batch 4 per process == 1 process, batch 8; 8 training frames = 1 step per epoch, 3 epochs.

    Every frame has 4 atoms, so the mean over processes of per-process mean losses is the
    global mean: the weights agree to rounding (tolerance 1e-10, float64).
    """
    import ase.io
    import torch
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k in range(10):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                  "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    ase.io.write(tmp_path / "tiny.extxyz", frames)
    (tmp_path / "tiny.split.json").write_text(json.dumps({"train": list(range(8)), "val": [8, 9]}))
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)

    cpus = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True).stdout.split()
    assert cpus and int(cpus[0]) >= 2, f"the SLURM node has {cpus} CPUs; srun -n 2 needs 2"
    # --immediate: a job that cannot start (too few CPUs, node down) fails in 120 s instead of waiting
    ddp = eqtool("train", "tiny.yaml", "--devices", "2", "--strategy", "ddp", "--run-dir", "ddp",
                 cwd=tmp_path, prefix=("srun", "--immediate=120", "-n", "2"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = eqtool("train", "tiny.yaml", "--set", "data.batch_size=8", "--run-dir", "one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]

    a = torch.load(tmp_path / "ddp/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "one/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 3  # the sampler split the 8 frames over 2 processes
    sd = b["state_dict"]
    weights = [k for k in sd if k.startswith("model.") and sd[k].is_floating_point()]
    assert weights
    diff = max(float((a["state_dict"][k] - b["state_dict"][k]).abs().max()) for k in weights)
    assert diff < 1e-10, diff
    # rank 0 alone wrote: one checkpoint folder, one log version, nothing outside the run folder
    folders = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("checkpoints"))
    assert folders == ["ddp/checkpoints", "one/checkpoints"]
    assert sorted(p.name for p in (tmp_path / "ddp/logs").iterdir()) == ["version_0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "one", "tiny.extxyz", "tiny.split.json",
                                                          "tiny.yaml"]
    assert (tmp_path / "ddp/model.pt").is_file()
