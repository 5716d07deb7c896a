"""Molecular dynamics: trajectories (HDF5/extxyz, append + repair), integrators, blow-up and
uncertainty stops, the ``eqtool md`` CLI (bad input, kill -9 + --restart), and the cu-emt
acceptance checks (short NVE drift, NVT Langevin temperature)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from conftest import CU_MODEL, assert_user_error, run
from torch import nn

from eqtool.calculator import EqCalculator
from eqtool.errors import EqtoolError
from eqtool.io import read_structures
from eqtool.io.hdf5 import H5Dataset
from eqtool.models.files import save_model
from eqtool.models.potential.base import edge_vectors
from eqtool.models.registry import build_model
from eqtool.nn.scatter import scatter_sum
from eqtool.sim.md import LOG_COLUMNS, MDConfig, read_log, run_md
from eqtool.sim.trajectory import Frame, open_trajectory, read_frames


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("mace", atomic_numbers=[29], cutoff=4.0, hidden_irreps="4x0e+4x1o", max_ell=1,
                       num_interactions=1, correlation=1, radial_mlp=[8], avg_num_neighbors=20.0).double()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_model(tiny_model(0), path)
    return path


class Attract(nn.Module):
    """A toy energy model whose atoms attract each other without bound (to make MD blow up)."""

    def __init__(self, strength: float = 20.0, nan: bool = False):
        super().__init__()
        self.cutoff = 3.0
        self.strength = strength
        self.nan = nan
        self.register_buffer("atomic_numbers", torch.tensor([29]))

    def forward(self, batch):
        vec, _, receiver = edge_vectors(batch)
        d = torch.linalg.vector_norm(vec, dim=-1)
        e_edge = -self.strength * (1 - d / self.cutoff) ** 2  # [E] eV
        energies = 0.5 * scatter_sum(e_edge, receiver, batch["positions"].shape[0])  # [N]
        if self.nan:
            energies = energies + torch.nan * batch["positions"].sum()
        return {"energies": energies, "energy": scatter_sum(energies, batch["batch"], 1)}


def _frame(step: int, n: int = 4, seed: int = 0) -> Frame:
    rng = np.random.default_rng(seed + step)
    return Frame(step=step, time_ps=step * 1e-3, positions=rng.normal(size=(n, 3)), numbers=np.full(n, 29),
                 cell=np.eye(3) * 5, pbc=np.ones(3, bool), velocities=rng.normal(size=(n, 3)),
                 energy=float(rng.normal()), forces=rng.normal(size=(n, 3)), stress=rng.normal(size=(3, 3)),
                 kinetic_energy=1.0, temperature=300.0)


# ------------------------------------------------------------------------------ trajectories
def test_h5_trajectory_append_repair_and_read_back(tmp_path):
    path = tmp_path / "t.h5"
    w = open_trajectory(path)
    for s in (0, 10, 20):
        w.append(_frame(s))
    w.abandon()  # like a killed run: no content hash yet
    with h5py.File(path, "a") as f:  # a half-written 4th frame: atom rows and one system row
        for name in ("positions", "velocities"):
            d = f["atoms"][name]
            d.resize(d.shape[0] + 4, axis=0)
        f["systems/energy"].resize(4, axis=0)
    assert [fr.step for fr in read_frames(path)] == [0, 10, 20]
    w = open_trajectory(path, append=True)
    assert w.n_frames == 3
    w.append(_frame(30))
    w.close()
    ds = H5Dataset(path)
    assert len(ds) == 4
    ds.verify()  # content hash written at close
    g = ds[3]
    np.testing.assert_allclose(g.positions, _frame(30).positions)
    np.testing.assert_allclose(g.labels["velocities"], _frame(30).velocities)
    assert int(g.labels["step"]) == 30
    frames = read_frames(path)
    assert [fr.step for fr in frames] == [0, 10, 20, 30]
    np.testing.assert_allclose(frames[1].forces, _frame(10).forces)
    assert read_frames(path, last_only=True)[0].step == 30


def test_extxyz_trajectory_append_and_truncated_tail(tmp_path):
    path = tmp_path / "t.extxyz"
    w = open_trajectory(path)
    for s in (0, 5):
        w.append(_frame(s))
    w.close()
    with open(path, "a") as fh:  # a frame cut short by a kill
        fh.write("4\nLattice=\"5 0 0 0 5 0 0 0 5\" step=10\nCu 0 0 0\n")
    assert [fr.step for fr in read_frames(path)] == [0, 5]
    w = open_trajectory(path, append=True)
    w.append(_frame(10))
    w.close()
    frames = read_frames(path)
    assert [fr.step for fr in frames] == [0, 5, 10]
    np.testing.assert_allclose(frames[2].velocities, _frame(10).velocities, atol=1e-7)
    assert len(read_structures(path)) == 3


# ---------------------------------------------------------------------------------- run_md
@pytest.mark.parametrize("ensemble,thermostat", [("nvt", "nose-hoover"), ("nvt", "berendsen"),
                                                 ("npt", "langevin"), ("npt", "nose-hoover"),
                                                 ("npt", "berendsen")])
def test_integrators_run(ensemble, thermostat):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    cfg = MDConfig(ensemble=ensemble, thermostat=thermostat, temperature_k=300, timestep_fs=2.0, steps=20,
                   interval=5, pressure_gpa=5.0 if ensemble == "npt" else 0.0, pdamp_fs=100.0, tdamp_fs=50.0)
    res = run_md(atoms, EMT(), cfg)
    assert res.stopped is None and res.step == 20
    assert [r["step"] for r in res.records] == [0, 5, 10, 15, 20]
    v = [r["volume_A3"] for r in res.records]
    if ensemble == "npt":
        assert v[-1] < v[0]  # 5 GPa compresses
    else:
        assert v[-1] == v[0]


def test_unsupported_setups_fail_before_writing(tmp_path):
    from ase.constraints import FixAtoms

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.set_constraint(FixAtoms(indices=[0]))
    with pytest.raises(EqtoolError, match="constraints"):
        run_md(atoms, EMT(), MDConfig(ensemble="npt", thermostat="nose-hoover"), trajectory=tmp_path / "t.h5",
               log=tmp_path / "t.csv")
    with pytest.raises(EqtoolError, match="periodic"):
        run_md(Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]]), EMT(), MDConfig(ensemble="npt"),
               trajectory=tmp_path / "t.h5")
    with pytest.raises(EqtoolError, match="do not match"):
        w = open_trajectory(tmp_path / "other.h5")
        w.append(_frame(0, n=2))
        w.close()
        run_md(atoms, EMT(), MDConfig(ensemble="nve", steps=2), trajectory=tmp_path / "other.h5",
               restart=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.h5"]


def test_restart_after_a_kill_between_frame_and_log_row_keeps_the_log_whole(tmp_path):
    """The frame is committed before its log row; a kill in between leaves the trajectory one row ahead
    of the log, and the restart writes that row before continuing."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    traj, log = tmp_path / "t.h5", tmp_path / "t.csv"
    run_md(atoms, EMT(), MDConfig(ensemble="nve", steps=20, interval=10), trajectory=traj, log=log)
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n")  # the step-20 row never made it
    assert [r["step"] for r in read_log(log)] == [0, 10]
    run_md(atoms, EMT(), MDConfig(ensemble="nve", steps=40, interval=10), trajectory=traj, log=log,
           restart=True)
    assert [r["step"] for r in read_log(log)] == [0, 10, 20, 30, 40]
    assert [f.step for f in read_frames(traj)] == [0, 10, 20, 30, 40]


def test_initial_velocities_seeded_with_zero_momentum():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    cfg = MDConfig(ensemble="nve", temperature_k=500, steps=0, seed=7)
    a = run_md(atoms, EMT(), cfg).atoms
    b = run_md(atoms, EMT(), cfg).atoms
    np.testing.assert_array_equal(a.get_momenta(), b.get_momenta())
    np.testing.assert_allclose(a.get_momenta().sum(0), 0, atol=1e-10)
    c = run_md(atoms, EMT(), MDConfig(ensemble="nve", temperature_k=500, steps=0, seed=8)).atoms
    assert not np.allclose(a.get_momenta(), c.get_momenta())


def test_blow_up_and_nan_stop_early(tmp_path):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.0, 0, 0]])
    cfg = MDConfig(ensemble="nve", temperature_k=0, timestep_fs=1.0, steps=500, interval=10)
    res = run_md(atoms, EqCalculator(Attract(), device="cpu"), cfg, trajectory=tmp_path / "b.h5")
    assert res.stopped is not None and "blew up" in res.stopped and "Å apart" in res.stopped
    assert 0 < res.step < 500
    frames = read_frames(tmp_path / "b.h5")  # everything before the blow-up is kept and readable
    assert frames[0].step == 0 and all(f.step <= res.step for f in frames)
    res = run_md(atoms, EqCalculator(Attract(nan=True), device="cpu"), cfg)
    assert res.stopped is not None and "non-finite" in res.stopped
    with pytest.raises(EqtoolError, match="committee"):
        run_md(atoms, EMT(), MDConfig(max_uncertainty=0.1))


def test_committee_uncertainty_stop(tmp_path):
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"m{k}.pt")
        save_model(tiny_model(k), paths[-1])
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.1, seed=0)
    calc = EqCalculator([str(p) for p in paths], device="cpu")
    cfg = MDConfig(ensemble="nve", temperature_k=300, steps=50, interval=10, max_uncertainty=1e-6)
    res = run_md(atoms, calc, cfg, trajectory=tmp_path / "u.h5", log=tmp_path / "u.csv")
    assert res.stopped is not None and "uncertainty" in res.stopped and "--max-uncertainty" in res.stopped
    assert res.step <= 1
    rows = read_log(tmp_path / "u.csv")
    assert rows and rows[0]["force_std_max_eV_A"] > 1e-6


# -------------------------------------------------------------------------------------- CLI
def test_cli_md_extxyz_log_plot_and_restart(model_file, tmp_path, capsys):
    start = tmp_path / "cu.extxyz"
    write(start, bulk("Cu", "fcc", a=3.61, cubic=True))
    out = tmp_path / "traj.extxyz"
    argv = ["md", start, "--model", model_file, "--ensemble", "nvt", "--temperature", "300", "--timestep",
            "1", "--steps", "20", "--interval", "5", "--out", out, "--device", "cpu"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert "ns/day" in err
    assert [f.step for f in read_frames(out)] == [0, 5, 10, 15, 20]
    rows = read_log(tmp_path / "traj.csv")
    assert list(rows[0]) == list(LOG_COLUMNS) and [r["step"] for r in rows] == [0, 5, 10, 15, 20]
    assert abs(rows[-1]["time_ps"] - 0.020) < 1e-12
    assert (tmp_path / "traj.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # existing output: refused without --restart, continued with it (to 30 steps total)
    code, o, e = run(argv, capsys)
    assert_user_error(code, o, e, "traj.extxyz", "--restart")
    argv[argv.index("20")] = "30"
    code, _, err = run(argv + ["--restart"], capsys)
    assert code == 0, err
    assert [f.step for f in read_frames(out)] == [0, 5, 10, 15, 20, 25, 30]
    assert [r["step"] for r in read_log(tmp_path / "traj.csv")] == [0, 5, 10, 15, 20, 25, 30]


def test_cli_md_stopped_early_exit_code(tmp_path, capsys):
    for k in range(2):
        save_model(tiny_model(k), tmp_path / f"m{k}.pt")
    start = tmp_path / "cu.extxyz"
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a.rattle(0.1, seed=1)
    write(start, a)
    out = tmp_path / "u.h5"
    code, _, err = run(["md", start, "--model", tmp_path / "m0.pt", "--model", tmp_path / "m1.pt",
                        "--steps", "20", "--max-uncertainty", "1e-6", "--out", out], capsys)
    assert code == 3, err
    assert "stopped early" in err and "uncertainty" in err
    assert len(H5Dataset(out)) >= 1


def test_cli_md_bad_input_one_line_exit_2_nothing_written(model_file, tmp_path, capsys):
    good = tmp_path / "cu.extxyz"
    write(good, bulk("Cu", "fcc", a=3.61, cubic=True))
    out = tmp_path / "t.h5"
    base = ["md", good, "--model", model_file, "--out", out, "--steps", "5"]
    au = tmp_path / "au.extxyz"
    write(au, bulk("Au", "fcc", a=4.08))
    overlap = tmp_path / "overlap.extxyz"
    write(overlap, Atoms("Cu2", positions=[[0, 0, 0], [0.05, 0, 0]], cell=[5, 5, 5], pbc=True))
    cases = [
        (base + ["--temperature", "-5"], ["--temperature"]),
        (base + ["--timestep", "-1"], ["--timestep"]),
        (base + ["--timestep", "0"], ["--timestep"]),
        (base + ["--ensemble", "nvx"], ["nvx"]),
        (base + ["--ensemble", "nvt", "--thermostat", "andersen"], ["andersen"]),
        (base + ["--thermostat", "langevin"], ["--thermostat"]),  # NVE has no thermostat
        (base + ["--pressure", "1"], ["--pressure"]),
        (base + ["--interval", "0"], ["--interval"]),
        (["md", good, "--model", "no-such-model", "--out", out], ["no-such-model"]),
        (["md", good, "--model", tmp_path / "missing.pt", "--out", out], ["missing.pt"]),
        (["md", good, "--model", model_file, "--out", tmp_path / "nope" / "t.h5"], ["nope"]),
        (["md", good, "--model", model_file, "--out", tmp_path / "t.dcd"], [".dcd"]),
        (["md", au, "--model", model_file, "--out", out], ["au.extxyz", "Au"]),
        (["md", overlap, "--model", model_file, "--out", out], ["overlap.extxyz", "overlap"]),
        (["md", tmp_path / "none.extxyz", "--model", model_file, "--out", out], ["none.extxyz"]),
    ]
    for argv, needles in cases:
        code, o, e = run(argv, capsys)
        assert_user_error(code, o, e, *needles)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["au.extxyz", "cu.extxyz", "overlap.extxyz"]


# ------------------------------------------------------------------------- cu-emt acceptance
def _cu_cell(n=2, a=3.61):
    return bulk("Cu", "fcc", a=a, cubic=True).repeat((n, n, n))


def test_cu_emt_nve_energy_drift_short():
    """32 atoms, 1 fs, 0.2 ps at ~300 K in float64 (the 108-atom, 2 ps run is benchmarks/nve_drift.py)."""
    calc = EqCalculator(CU_MODEL, device="cpu", dtype="float64")
    cfg = MDConfig(ensemble="nve", temperature_k=600, timestep_fs=1.0, steps=200, interval=5, seed=0)
    res = run_md(_cu_cell(), calc, cfg)
    assert res.stopped is None
    t = np.array([r["time_ps"] for r in res.records])
    n = len(res.atoms)
    etot = np.array([r["etot_eV"] for r in res.records]) / n
    temp = np.array([r["temperature_K"] for r in res.records])
    assert 150 < temp[len(temp) // 2:].mean() < 450  # equipartition: ~T0/2
    drift = abs(np.polyfit(t, etot, 1)[0]) * 1e3  # meV/atom/ps
    assert drift <= 0.1, drift
    assert np.abs(etot - etot[0]).max() * 1e3 < 0.5  # meV/atom


def test_cu_emt_nvt_langevin_600k_mean_temperature():
    """Second-half mean temperature within 5 % of 600 K. A strong friction (0.2/fs) decorrelates
    the kinetic energy within a few steps, so 32 atoms and 0.8 ps give a tight mean."""
    calc = EqCalculator(CU_MODEL, device="cpu", dtype="float64")
    cfg = MDConfig(ensemble="nvt", thermostat="langevin", temperature_k=600, timestep_fs=2.0, steps=400,
                   interval=1, seed=0, friction_per_fs=0.2)
    res = run_md(_cu_cell(a=3.63), calc, cfg)
    assert res.stopped is None
    temp = np.array([r["temperature_K"] for r in res.records])
    mean = temp[len(temp) // 2:].mean()
    assert abs(mean - 600) / 600 < 0.05, mean


def _wait_for_log_step(log: Path, step: int, proc, timeout: float = 240) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()
        if log.is_file():
            lines = log.read_text().splitlines()
            done = [ln.split(",")[0] for ln in lines[1:] if ln.count(",") == len(LOG_COLUMNS) - 1]
            if done and done[-1].isdigit() and int(done[-1]) >= step:
                return
        time.sleep(0.2)
    raise AssertionError("md did not get far enough in time")


def test_cu_emt_md_killed_with_sigkill_and_restarted_is_one_continuous_trajectory(tmp_path):
    start = tmp_path / "cu.extxyz"
    write(start, _cu_cell())
    out = tmp_path / "traj.h5"
    cmd = [sys.executable, "-m", "eqtool.cli.main", "md", str(start), "--model", CU_MODEL, "--ensemble",
           "nvt", "--temperature", "300", "--timestep", "2", "--steps", "120", "--interval", "10", "--out",
           str(out), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    try:
        _wait_for_log_step(tmp_path / "traj.csv", 50, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = read_frames(out)[-1]
    assert 50 <= killed_at.step < 120
    done = subprocess.run(cmd + ["--restart"], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert f"from step {killed_at.step}" in done.stderr
    frames = read_frames(out)
    assert [f.step for f in frames] == list(range(0, 121, 10))
    np.testing.assert_allclose(frames[killed_at.step // 10].positions, killed_at.positions)
    ds = H5Dataset(out)  # reads back as an eqtool dataset, content hash intact
    assert len(ds) == 13
    ds.verify()
    steps = [r["step"] for r in read_log(tmp_path / "traj.csv")]
    assert steps == list(range(0, 121, 10))
    # no jumps: consecutive frames differ by a plausible 10-step displacement
    for a, b in zip(frames, frames[1:], strict=False):
        assert np.abs(b.positions - a.positions).max() < 1.0
