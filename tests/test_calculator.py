"""EqCalculator: ASE consistency (finite differences), pbc variants, neighbour-list reuse,
committees, dtype, bad input, and the ASE plugin registration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from conftest import CU_MODEL

from eqtool.calculator import EqCalculator
from eqtool.errors import EqtoolError
from eqtool.models.files import save_model
from eqtool.models.registry import build_model

ROOT = Path(__file__).resolve().parents[1]


def tiny_model(seed: int = 0, elements=(1, 6, 8, 29), cutoff: float = 4.0):
    """A small random MACE (smooth, fast) in float64."""
    torch.manual_seed(seed)
    return build_model("mace", atomic_numbers=list(elements), cutoff=cutoff, hidden_irreps="4x0e+4x1o",
                       max_ell=1, num_interactions=2, correlation=2, radial_mlp=[8],
                       avg_num_neighbors=20.0).double()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_model(tiny_model(0), path)
    return path


def _cu(rattle=0.05, seed=1, repeat=(2, 2, 2)) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    atoms.rattle(rattle, seed=seed)
    return atoms


def _fd_check(atoms, calc, stress=True):
    atoms = atoms.copy()
    atoms.calc = calc
    f = atoms.get_forces()
    fn = calculate_numerical_forces(atoms, eps=1e-4)
    assert np.abs(f).max() > 1e-4  # not trivially zero
    np.testing.assert_allclose(f, fn, atol=1e-6 + 1e-5 * np.abs(fn).max())
    if stress:
        s = atoms.get_stress()
        sn = calculate_numerical_stress(atoms, eps=1e-6)
        np.testing.assert_allclose(s, sn, atol=1e-7 + 1e-5 * np.abs(sn).max())


# ------------------------------------------------------------------------------------ physics
def test_finite_differences_periodic(model_file):
    # 4 atoms in a cell smaller than the cutoff: atoms see their own periodic images
    _fd_check(_cu(repeat=(1, 1, 1)), EqCalculator(model_file, device="cpu"))


def test_finite_differences_mixed_pbc_and_molecule(model_file):
    calc = EqCalculator(model_file, device="cpu")
    slab = fcc111("Cu", size=(1, 2, 2), vacuum=5.0)  # pbc T, T, F
    slab.rattle(0.05, seed=2)
    _fd_check(slab, calc, stress=False)
    mol = molecule("H2O")
    _fd_check(mol, calc, stress=False)
    mol.calc = calc
    with pytest.raises(PropertyNotImplementedError):
        mol.get_stress()


def test_results_shapes_units_and_per_atom_energies(model_file):
    atoms = _cu()
    atoms.calc = EqCalculator(model_file, device="cpu")
    e = atoms.get_potential_energy()
    assert atoms.get_potential_energy(force_consistent=True) == e
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),)
    assert np.isclose(energies.sum(), e, atol=1e-10)
    assert atoms.get_forces().shape == (len(atoms), 3)
    s = atoms.get_stress()
    assert s.shape == (6,)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), atoms.get_stress(voigt=False).T)
    # Voigt order xx yy zz yz xz xy: compare with a direct 3x3 from a strain derivative
    full = atoms.get_stress(voigt=False)
    np.testing.assert_allclose(s, full[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])


def test_invariance_and_equivalence_to_supercell(model_file):
    calc = EqCalculator(model_file, device="cpu")
    prim = bulk("Cu", "fcc", a=3.6)
    prim.calc = calc
    e1 = prim.get_potential_energy()
    sup = prim.repeat((2, 3, 1))
    sup.calc = calc
    assert np.isclose(sup.get_potential_energy(), 6 * e1, rtol=1e-10)
    np.testing.assert_allclose(sup.get_stress(), prim.get_stress(), atol=1e-10)


# ------------------------------------------------------------------------------ neighbour lists
def test_neighbor_list_reuse_matches_fresh_lists(model_file):
    reuse = EqCalculator(model_file, device="cpu", skin=1.0)
    fresh = EqCalculator(model_file, device="cpu", skin=0.0)
    atoms = _cu()
    rng = np.random.default_rng(0)
    for _ in range(8):
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = reuse, fresh
        assert np.isclose(a.get_potential_energy(), b.get_potential_energy(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-10)
    assert fresh.n_neighbor_builds == 8
    assert reuse.n_neighbor_builds < 4  # moves of ~0.05 Å stay inside the 0.5 Å half-skin
    # a changed cell always rebuilds
    builds = reuse.n_neighbor_builds
    a = atoms.copy()
    a.set_cell(a.cell * 1.01, scale_atoms=True)
    a.calc = reuse
    a.get_potential_energy()
    assert reuse.n_neighbor_builds == builds + 1


# ---------------------------------------------------------------------------------- committee
def test_committee_mean_and_std(tmp_path):
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"m{k}.pt")
        save_model(tiny_model(k), paths[-1])
    atoms = _cu()
    singles = []
    for p in paths:
        a = atoms.copy()
        a.calc = EqCalculator(p, device="cpu")
        singles.append((a.get_potential_energy(), a.get_forces()))
    calc = EqCalculator([str(p) for p in paths], device="cpu")
    atoms.calc = calc
    e = np.array([s[0] for s in singles])
    f = np.stack([s[1] for s in singles])
    assert np.isclose(atoms.get_potential_energy(), e.mean(), atol=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), f.mean(0), atol=1e-10)
    assert np.isclose(calc.results["energy_std"], e.std(), atol=1e-10)
    np.testing.assert_allclose(calc.results["forces_std"], f.std(0), atol=1e-10)
    assert calc.max_force_std() == pytest.approx(np.linalg.norm(f.std(0), axis=1).max())
    assert calc.results["energy_std"] > 0


def test_float32(model_file):
    atoms = _cu()
    a64, a32 = atoms.copy(), atoms.copy()
    a64.calc = EqCalculator(model_file, device="cpu", dtype="float64")
    a32.calc = EqCalculator(model_file, device="cpu", dtype="float32")
    assert a32.calc.models[0].e0.dtype == torch.float32
    assert np.isclose(a32.get_potential_energy(), a64.get_potential_energy(), atol=1e-4)
    np.testing.assert_allclose(a32.get_forces(), a64.get_forces(), atol=1e-4)


# --------------------------------------------------------------------------------- bad input
def test_bad_input(model_file, tmp_path):
    with pytest.raises(EqtoolError, match="no-such-model"):
        EqCalculator("no-such-model")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model")
    with pytest.raises(EqtoolError, match="garbage.pt"):
        EqCalculator(garbage)
    with pytest.raises(EqtoolError, match="dtype"):
        EqCalculator(model_file, dtype="float16")
    atoms = Atoms("CuAu", positions=[[0, 0, 0], [2.5, 0, 0]])
    atoms.calc = EqCalculator(model_file, device="cpu")
    with pytest.raises(EqtoolError, match="Au"):
        atoms.get_potential_energy()
    nan = _cu()
    nan.positions[0, 0] = np.nan
    nan.calc = EqCalculator(model_file, device="cpu")
    with pytest.raises(EqtoolError, match="non-finite"):
        nan.get_forces()


# ----------------------------------------------------------------------------------- plugin
def test_ase_plugin_entry_point_declared_and_resolves():
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split('[project.entry-points."ase.plugins"]', 1)[1].split("\n[", 1)[0]
    target = section.split('eqtool = "', 1)[1].split('"', 1)[0]
    assert target == "eqtool.calculator"
    from importlib.metadata import EntryPoint

    from ase._4.plugins import PluginCollection

    module = EntryPoint(name="eqtool", value=target, group="ase.plugins").load()
    names = {p.name: p for p in module.__ase_plugins__}
    assert names["eqtool"]() is EqCalculator
    coll = PluginCollection(set(module.__ase_plugins__))
    assert [p.name for p in coll.calculators] == ["eqtool"]


def test_ase_finds_installed_plugin_by_name(tmp_path):
    """Through the installed package metadata (``pip install -e .``), as a user's ASE sees it."""
    code = ("from ase._4.plugins import plugins\n"
            "cls = {p.name: p for p in plugins.calculators}['eqtool']()\n"
            "print(cls.__module__ + '.' + cls.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "eqtool.calculator.EqCalculator"


# ------------------------------------------------------------------------- cu-emt acceptance
@pytest.fixture(scope="module")
def cu_calc():
    return EqCalculator(CU_MODEL, device="cpu", dtype="float64")


def test_cu_emt_forces_and_stress_match_finite_differences(cu_calc):
    atoms = bulk("Cu", "fcc", a=3.62, cubic=True)
    atoms.rattle(0.05, seed=3)
    _fd_check(atoms, cu_calc)
    slab = fcc111("Cu", size=(1, 2, 3), vacuum=6.0)
    slab.rattle(0.05, seed=4)
    _fd_check(slab, cu_calc, stress=False)
