"""Relaxations: library function, ``eqtool relax`` CLI, bad input, and the cu-emt acceptance
numbers (lattice constant, vacancy formation energy) against ASE's EMT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.io import read, write
from conftest import CU_MODEL, assert_user_error, cu_emt_accuracy_xfail, run

from eqtool.errors import EqtoolError
from eqtool.io import read_structures
from eqtool.models.files import save_model
from eqtool.models.registry import build_model
from eqtool.sim.relax import relax


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("mace", atomic_numbers=[29], cutoff=4.0, hidden_irreps="4x0e+4x1o", max_ell=1,
                       num_interactions=2, correlation=2, radial_mlp=[8], avg_num_neighbors=20.0).double()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_model(tiny_model(0), path)
    return path


# ------------------------------------------------------------------------------------ library
@pytest.mark.parametrize("optimizer", ["fire", "bfgs", "lbfgs"])
def test_relax_with_emt_converges_and_respects_fixed_atoms(optimizer):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
    atoms.rattle(0.1, seed=0)
    atoms.set_constraint(FixAtoms(indices=[0, 1]))
    before = atoms.positions.copy()
    res = relax(atoms, EMT(), fmax=0.01, steps=300, optimizer=optimizer)
    assert res.converged and res.steps > 0
    assert res.max_force < 0.01
    assert res.final_energy < res.initial_energy
    np.testing.assert_allclose(res.atoms.positions[:2], before[:2])
    assert np.abs(res.atoms.positions[2:] - before[2:]).max() > 1e-3
    np.testing.assert_allclose(atoms.positions, before)  # the input is not modified


def test_cell_relaxation_under_pressure_shrinks_the_cell():
    from ase import units

    atoms = bulk("Cu", "fcc", a=3.7)
    r0 = relax(atoms, EMT(), fmax=1e-3, steps=300, optimizer="bfgs", cell=True)
    r10 = relax(atoms, EMT(), fmax=1e-3, steps=300, optimizer="bfgs", cell=True, pressure_gpa=10.0)
    assert r0.converged and r10.converged
    assert r10.atoms.get_volume() < r0.atoms.get_volume()
    # at the target pressure the stress is -P (ASE sign) within the convergence threshold
    p10 = -r10.atoms.get_stress()[:3].mean() / units.GPa
    assert p10 == pytest.approx(10.0, abs=0.5)
    assert abs(r0.atoms.get_stress()).max() < 2e-3


def test_relax_trajectory_and_options(model_file):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    res = relax(atoms, str(model_file), fmax=0.02, steps=50, trajectory=True)
    assert len(res.frames) == res.steps + 1
    assert res.frames[0].get_potential_energy() == pytest.approx(res.initial_energy)
    with pytest.raises(EqtoolError, match="--optimizer"):
        relax(atoms, EMT(), optimizer="newton")
    with pytest.raises(EqtoolError, match="--cell"):
        relax(atoms, EMT(), pressure_gpa=1.0)
    with pytest.raises(EqtoolError, match="--fmax"):
        relax(atoms, EMT(), fmax=-1)
    with pytest.raises(EqtoolError, match="periodic"):
        relax(Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]]), EMT(), cell=True)


# ---------------------------------------------------------------------------------------- CLI
def test_cli_relax_many_structures_with_fixed_atoms(model_file, tmp_path, capsys):
    frames = []
    for k in range(2):
        a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        a.rattle(0.05, seed=k)
        a.set_constraint(FixAtoms(indices=[0]))
        frames.append(a)
    write(tmp_path / "many.extxyz", frames)
    write(tmp_path / "one.traj", bulk("Cu", "fcc", a=3.7))
    out = tmp_path / "relaxed.extxyz"
    code, _, err = run(["relax", tmp_path / "many.extxyz", tmp_path / "one.traj", "--model", model_file,
                        "--fmax", "0.02", "--out", out, "--traj-dir", tmp_path, "--device", "cpu"], capsys)
    assert code == 0, err
    assert "converged" in err and "wrote 3 structure(s)" in err
    graphs = read_structures(out)
    assert len(graphs) == 3
    for g in graphs:
        assert {"energy", "forces", "stress"} <= set(g.labels)
        assert g.info["relax_converged"] is True or g.info["relax_converged"] in ("True", "T", 1)
    relaxed = read(out, ":")
    np.testing.assert_allclose(relaxed[0].positions[0], frames[0].positions[0])  # fixed atom kept
    assert (tmp_path / "relax_0.extxyz").is_file() and (tmp_path / "relax_2.extxyz").is_file()


def test_cli_reports_non_converged_with_exit_code(model_file, tmp_path, capsys):
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    a.rattle(0.2, seed=3)
    write(tmp_path / "in.extxyz", a)
    out = tmp_path / "out.extxyz"
    code, _, err = run(["relax", tmp_path / "in.extxyz", "--model", model_file, "--fmax", "1e-6", "--steps",
                        "2", "--out", out], capsys)
    assert code == 3, err
    assert "not converged" in err and "1 of 1" in err
    assert out.is_file()  # results are still written, and reported


def test_cli_bad_input_one_line_exit_2_nothing_written(model_file, tmp_path, capsys):
    good = tmp_path / "cu.extxyz"
    write(good, bulk("Cu", "fcc", a=3.6))
    out = tmp_path / "out.extxyz"
    cases = [
        (["relax", good, "--model", "no-such-model", "--out", out], ["no-such-model"]),
        (["relax", good, "--model", tmp_path / "missing.pt", "--out", out], ["missing.pt"]),
        (["relax", good, "--model", good, "--out", out], ["cu.extxyz"]),  # not a model file
        (["relax", good, "--model", model_file, "--out", tmp_path / "nope" / "out.extxyz"], ["nope"]),
        (["relax", good, "--model", model_file, "--out", out, "--fmax", "-1"], ["--fmax"]),
        (["relax", good, "--model", model_file, "--out", out, "--optimizer", "newton"], ["newton"]),
        (["relax", good, "--model", model_file, "--out", out, "--pressure", "5"], ["--cell"]),
    ]
    au = tmp_path / "au.extxyz"
    write(au, bulk("Au", "fcc", a=4.08))
    cases.append((["relax", au, "--model", model_file, "--out", out], ["au.extxyz", "Au"]))
    overlap = tmp_path / "overlap.extxyz"
    write(overlap, Atoms("Cu2", positions=[[0, 0, 0], [0.05, 0, 0]], cell=[5, 5, 5], pbc=True))
    cases.append((["relax", overlap, "--model", model_file, "--out", out], ["overlap.extxyz", "overlap"]))
    mol = tmp_path / "mol.extxyz"
    write(mol, Atoms("Cu2", positions=[[0, 0, 0], [2.4, 0, 0]]))
    cases.append((["relax", mol, "--model", model_file, "--out", out, "--cell"], ["mol.extxyz", "periodic"]))
    for argv, needles in cases:
        code, o, e = run(argv, capsys)
        assert_user_error(code, o, e, *needles)
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["au.extxyz", "cu.extxyz", "mol.extxyz",
                                                         "overlap.extxyz"]


# ------------------------------------------------------------------------- cu-emt acceptance
def _lattice_constant_cli(model, tmp_path, capsys) -> float:
    start = tmp_path / "prim.extxyz"
    write(start, bulk("Cu", "fcc", a=3.50))
    out = tmp_path / "prim_relaxed.extxyz"
    code, _, err = run(["relax", start, "--model", model, "--cell", "--fmax", "1e-4", "--steps", "300",
                        "--optimizer", "bfgs", "--out", out, "--device", "cpu"], capsys)
    assert code == 0, err
    cell = read(out).cell
    return float(np.mean(cell.lengths())) * np.sqrt(2)  # primitive fcc: a_prim = a / sqrt(2)


@cu_emt_accuracy_xfail()
def test_cu_emt_lattice_constant_within_0p3_percent_of_emt(tmp_path, capsys):
    ref = relax(bulk("Cu", "fcc", a=3.50), EMT(), fmax=1e-4, steps=300, optimizer="bfgs", cell=True)
    a_emt = float(np.mean(ref.atoms.cell.lengths())) * np.sqrt(2)
    a_ml = _lattice_constant_cli(CU_MODEL, tmp_path, capsys)
    assert abs(a_ml - a_emt) / a_emt < 0.003, (a_ml, a_emt)


def _vacancy_formation_energy(calc) -> float:
    perfect = bulk("Cu", "fcc", a=3.59)  # primitive cell
    perfect = relax(perfect, calc, fmax=1e-4, steps=200, optimizer="bfgs", cell=True).atoms
    sup = perfect.repeat((3, 3, 3))  # 27 atoms at the potential's own lattice constant
    sup.calc = calc
    e_bulk = sup.get_potential_energy()
    n = len(sup)
    vac = sup.copy()
    del vac[0]
    res = relax(vac, calc, fmax=0.005, steps=300, optimizer="bfgs")
    assert res.converged
    return res.final_energy - (n - 1) / n * e_bulk


@cu_emt_accuracy_xfail()
def test_cu_emt_vacancy_formation_energy_within_0p05_ev_of_emt():
    from eqtool.calculator import EqCalculator

    e_emt = _vacancy_formation_energy(EMT())
    e_ml = _vacancy_formation_energy(EqCalculator(CU_MODEL, device="cpu", dtype="float64"))
    assert abs(e_ml - e_emt) < 0.05, (e_ml, e_emt)
