"""eqtool.dft: AO layout, orbital energies, QH9 metrics, SCF from a guess, Hamiltonian prediction output."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eqtool.dft import (
    MAX_AO,
    ao_counts,
    ao_slices,
    blocks_from_matrix,
    build_mol,
    hamiltonian_metrics,
    matrix_from_blocks,
    orbital_energies,
    scf_from_guess,
)
from eqtool.errors import EqtoolError

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "data" / "hamiltonian_tiny.h5"
ETHANOL_Z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])


@pytest.fixture(scope="module")
def tiny():
    from eqtool.io.hdf5 import read_h5

    graphs = read_h5(TINY)
    names = [g.info["name"] for g in graphs]
    assert "water" in names and "ethanol" in names
    return graphs


def _mats(g):
    z = g.atomic_numbers
    return matrix_from_blocks(g.labels["hamiltonian"], z), matrix_from_blocks(g.labels["overlap"], z)


def _first(graphs, name):
    return next(g for g in graphs if g.info["name"] == name)


# ------------------------------------------------------------------ AO layout
def test_ao_layout_matches_pyscf():
    z = np.array([1, 6, 7, 8, 9])
    pos = np.arange(15, dtype=float).reshape(5, 3) * 1.7
    mol = build_mol(z, pos, spin=1)  # 31 electrons
    ref = [slice(int(a), int(b)) for a, b in mol.aoslice_by_atom()[:, 2:4]]
    assert ao_slices(z) == ref
    assert ao_counts(z).tolist() == [5, 14, 14, 14, 14]
    labels = mol.ao_labels()
    assert [s.split()[2] for s in labels[:5]] == ["1s", "2s", "2px", "2py", "2pz"]
    with pytest.raises(EqtoolError, match="Z=16"):
        ao_counts([1, 16])


def test_blocks_matrix_round_trip_numpy_and_torch():
    rng = np.random.default_rng(0)
    n_ao = int(ao_counts(ETHANOL_Z).sum())
    assert n_ao == 72
    a = rng.normal(size=(n_ao, n_ao))
    blocks = blocks_from_matrix(a, ETHANOL_Z)
    assert blocks.shape == (81, MAX_AO, MAX_AO)
    np.testing.assert_array_equal(matrix_from_blocks(blocks, ETHANOL_Z), a)
    # block (i, j) holds atom i's rows and atom j's columns; padding is zero
    sl = ao_slices(ETHANOL_Z)
    np.testing.assert_array_equal(blocks[0 * 9 + 3, :14, :5], a[sl[0], sl[3]])
    np.testing.assert_array_equal(blocks[3 * 9 + 0, :5, :14], a[sl[3], sl[0]])
    assert not blocks[3 * 9 + 4, 5:].any() and not blocks[3 * 9 + 4, :, 5:].any()
    t = torch.from_numpy(a)
    tb = blocks_from_matrix(t, ETHANOL_Z)
    np.testing.assert_array_equal(tb.numpy(), blocks)
    np.testing.assert_array_equal(matrix_from_blocks(tb, ETHANOL_Z).numpy(), a)
    with pytest.raises(EqtoolError, match="shape"):
        matrix_from_blocks(blocks[:80], ETHANOL_Z)


# ------------------------------------------------------------------ the data file
def test_tiny_file_attributes_and_overlap(tiny):
    from eqtool.io.hdf5 import H5Dataset

    attrs = H5Dataset(TINY).attrs
    assert attrs["basis"] == "def2-svp" and attrs["level_of_theory"].startswith("B3LYP/def2-SVP")
    assert "p as x,y,z" in attrs["ao_order"]
    for name in ("water", "ethanol"):
        g = _first(tiny, name)
        _, S = _mats(g)
        mol = build_mol(g.atomic_numbers, g.positions)
        np.testing.assert_allclose(S, mol.intor("int1e_ovlp"), atol=1e-12)
        assert int(g.labels["n_occ"]) == mol.nelectron // 2
        assert float(g.labels["energy"]) == pytest.approx(float(g.labels["dft_energy_hartree"]) * 27.211386,
                                                          rel=1e-7)


def test_orbital_energies_equal_pyscf_mo_energy(tiny):
    for name in ("water", "ethanol"):
        g = _first(tiny, name)
        H, S = _mats(g)
        n_ao = int(g.labels["n_ao"])
        eps, C = orbital_energies(H, S)
        # PySCF's mo_energy is one Fock build behind mf.get_fock(): up to ~1.3e-5 Ha on core levels
        np.testing.assert_allclose(eps, g.labels["mo_energy"][:n_ao], atol=3e-5)
        np.testing.assert_allclose(C.T @ S @ C, np.eye(n_ao), atol=1e-9)
        np.testing.assert_allclose(H @ C, S @ C * eps, atol=1e-9)
        eps_t, _ = orbital_energies(torch.from_numpy(H), torch.from_numpy(S))
        np.testing.assert_allclose(eps_t.numpy(), eps, atol=1e-10)
        assert float(g.labels["homo"]) == pytest.approx(eps[int(g.labels["n_occ"]) - 1], abs=1e-5)


# ------------------------------------------------------------------ metrics
def test_metrics_zero_for_identical(tiny):
    g = _first(tiny, "ethanol")
    H, S = _mats(g)
    m = hamiltonian_metrics(H, H, S, int(g.labels["n_occ"]), g.atomic_numbers)
    for key in ("h_mae", "h_mae_diag", "h_mae_offdiag", "occ_energy_mae", "homo_err", "lumo_err", "gap_err"):
        assert m[key] == pytest.approx(0.0, abs=1e-6), key
    assert m["psi"] == pytest.approx(100.0, abs=1e-9)


def test_metrics_on_hand_made_perturbations(tiny):
    g = _first(tiny, "water")
    z = g.atomic_numbers
    H, S = _mats(g)
    n_occ, n_ao = int(g.labels["n_occ"]), H.shape[0]
    n_diag = int((ao_counts(z) ** 2).sum())
    # one symmetric pair of elements in the oxygen on-site block
    d = 1e-3
    Hp = H.copy()
    Hp[0, 1] += d
    Hp[1, 0] += d
    m = hamiltonian_metrics(Hp, H, S, n_occ, z)
    assert m["h_mae"] == pytest.approx(2 * d / n_ao**2 * 1e6, rel=1e-9)
    assert m["h_mae_diag"] == pytest.approx(2 * d / n_diag * 1e6, rel=1e-9)
    assert m["h_mae_offdiag"] == 0.0
    # an off-diagonal block element (O, H1)
    Hp = H.copy()
    Hp[0, 14] += d
    Hp[14, 0] += d
    m = hamiltonian_metrics(Hp, H, S, n_occ, z)
    assert m["h_mae_diag"] == 0.0
    assert m["h_mae_offdiag"] == pytest.approx(2 * d / (n_ao**2 - n_diag) * 1e6, rel=1e-9)
    # H + c S shifts every orbital energy by c and leaves the orbitals unchanged
    c = 2e-3
    m = hamiltonian_metrics(H + c * S, H, S, n_occ, z)
    assert m["occ_energy_mae"] == pytest.approx(c * 1e6, rel=1e-6)
    assert m["homo_err"] == pytest.approx(c * 1e6, rel=1e-6)
    assert m["lumo_err"] == pytest.approx(c * 1e6, rel=1e-6)
    assert m["gap_err"] == pytest.approx(0.0, abs=1e-3)
    assert m["psi"] == pytest.approx(100.0, abs=1e-6)
    assert m["h_mae"] == pytest.approx(np.abs(c * S).mean() * 1e6, rel=1e-9)
    # a real perturbation lowers psi below 100 %
    rng = np.random.default_rng(1)
    noise = rng.normal(scale=2e-2, size=H.shape)
    m = hamiltonian_metrics(H + noise + noise.T, H, S, n_occ, z)
    assert 50.0 < m["psi"] < 99.99


# ------------------------------------------------------------------ SCF from a guess
def test_scf_from_dft_fock_converges_faster_than_minao(tiny):
    g = _first(tiny, "water")
    H, S = _mats(g)
    mol = build_mol(g.atomic_numbers, g.positions)
    r = scf_from_guess(mol, H, S)
    assert r["converged_guess"] and r["converged_minao"]
    assert r["cycles_guess"] < r["cycles_minao"]
    assert r["ratio"] < 1.0
    assert r["energy_guess"] == pytest.approx(float(g.labels["dft_energy_hartree"]), abs=1e-7)
    with pytest.raises(EqtoolError, match="AOs"):
        scf_from_guess(mol, H[:-1, :-1])


def test_missing_pyscf_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyscf", None)
    with pytest.raises(EqtoolError, match=r"eqtool\[dft\]"):
        build_mol([1, 1], [[0, 0, 0], [0, 0, 0.74]])


# ------------------------------------------------------------------ predict output
def _fake_net(graphs):
    """Stand-in Hamiltonian model: returns the DFT blocks of the stored system with these positions."""
    table = [(g.positions, torch.from_numpy(g.labels["hamiltonian"])) for g in graphs]

    def net(batch):
        pos = batch["positions"].numpy()
        for p, h in table:
            if p.shape == pos.shape and np.allclose(p, pos):
                return {"hamiltonian": h}
        raise AssertionError("unknown system")

    return net


def test_predict_hamiltonian_writes_file_and_table(tiny, tmp_path):
    from rich.console import Console

    from eqtool.cli._predict_hamiltonian import predict_hamiltonian
    from eqtool.io.hdf5 import H5Dataset

    graphs = [_first(tiny, "water"), _first(tiny, "ethanol")]
    inputs = [g._copy(labels={}) for g in graphs]
    console = Console(record=True, width=140)
    out = tmp_path / "H.h5"
    predict_hamiltonian(inputs[:1], _fake_net(graphs), out, scf=True, console=console)
    text = console.export_text()
    assert "HOMO" in text and "SCF cycle ratio" in text
    predict_hamiltonian(inputs, _fake_net(graphs), out, scf=False, console=console)
    ds = H5Dataset(out)
    assert len(ds) == 2 and ds.attrs["basis"] == "def2-svp"
    for k, g in enumerate(graphs):
        p = ds[k]
        np.testing.assert_allclose(p.labels["hamiltonian"], g.labels["hamiltonian"], atol=1e-12)
        np.testing.assert_allclose(p.labels["homo"], g.labels["homo"], atol=2e-6)
        np.testing.assert_allclose(p.labels["gap"], g.labels["gap"], atol=4e-6)
    assert p.labels["mo_energy"].shape == (72,)
    assert not list(tmp_path.glob(".H.h5*"))  # no temp files left


def test_predict_hamiltonian_bad_input(tiny, tmp_path):
    from rich.console import Console

    from eqtool.cli._predict_hamiltonian import predict_hamiltonian
    from eqtool.data.graph import AtomGraph

    g = _first(tiny, "water")
    out = tmp_path / "H.h5"
    sulfur = AtomGraph([[0, 0, 0], [0, 0, 1.3], [1.3, 0, 0]], [16, 1, 1], source="h2s.xyz@0")
    with pytest.raises(EqtoolError, match="Z=16") as e:
        predict_hamiltonian([sulfur], _fake_net([g]), out, scf=False, console=Console())
    assert "h2s.xyz" in str(e.value)

    def wrong(batch):
        return {"hamiltonian": torch.zeros(4, 14, 14, dtype=torch.float64)}

    with pytest.raises(EqtoolError, match="shape"):
        predict_hamiltonian([g], wrong, out, scf=False, console=Console())
    assert not out.exists()


# ------------------------------------------------------------------ the data script's split
def test_make_split_is_per_molecule_and_disjoint():
    spec = importlib.util.spec_from_file_location("make_hamiltonian", ROOT / "data" / "make_hamiltonian.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s = mod.make_split({"water": 50, "ethanol": 30}, seed=0)
    json.dumps(s)
    all_idx = s["train"] + s["val"] + s["test"]
    assert sorted(all_idx) == list(range(80))
    assert sum(i < 50 for i in s["val"]) == 5 and sum(i >= 50 for i in s["val"]) == 3
    assert s == mod.make_split({"water": 50, "ethanol": 30}, seed=0)
    # a partial file (first 20 water, 10 ethanol) gets the full split restricted to those conformers
    part = mod.make_split({"water": 50, "ethanol": 30}, seed=0, present={"water": 20, "ethanol": 10})
    assert part["by_molecule"]["ethanol"] == {"first": 20, "count": 10}
    for key in ("train", "val", "test"):
        want = [i for i in s[key] if i < 20] + [i - 50 + 20 for i in s[key] if 50 <= i < 60]
        assert part[key] == sorted(want)
    # more ethanol conformers with the split drawn over the first 30: held-out ones stay, new ones train
    more = mod.make_split({"water": 50, "ethanol": 45}, seed=0, base={"ethanol": 30})
    assert more["val"] == s["val"] and more["test"] == s["test"]
    assert more["train"] == s["train"] + list(range(80, 95))


def test_make_hamiltonian_start_geometry_from_smiles():
    """The >= 18-atom set (data/make_hamiltonian_hexanol.py) starts its MD from an RDKit/MMFF geometry."""
    spec = importlib.util.spec_from_file_location("make_hamiltonian", ROOT / "data" / "make_hamiltonian.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    hexanol = mod.initial_atoms("smiles:CCCCCCO", seed=0)
    assert hexanol.get_chemical_formula() == "C6H14O" and len(hexanol) == 21
    d = hexanol.get_all_distances()[np.triu_indices(21, 1)]
    assert 0.9 < d.min() < 1.15 and d.max() < 10.0  # bonded O-H / C-H, one molecule
    np.testing.assert_allclose(mod.initial_atoms("smiles:CCCCCCO", seed=0).positions, hexanol.positions)
    assert mod.initial_atoms("H2O", seed=0).get_chemical_formula() == "H2O"


# ------------------------------------------------------------------ eqtool predict with a Hamiltonian model
def test_cli_predict_with_the_shipped_hamiltonian_model(tmp_path, capsys):
    import ase.io
    from ase.build import molecule
    from conftest import assert_user_error, run

    from eqtool.io.hdf5 import H5Dataset

    ase.io.write(tmp_path / "water.xyz", molecule("H2O"))
    out = tmp_path / "H.h5"
    code, stdout, err = run(["predict", tmp_path / "water.xyz", "--model", "water-ethanol-svp", "--out", out,
                             "--scf"], capsys)
    assert code == 0, err
    assert "SCF cycle ratio" in stdout and "HOMO" in stdout
    ds = H5Dataset(out)
    assert len(ds) == 1 and ds.attrs["basis"] == "def2-svp"
    g = ds[0]
    assert g.labels["hamiltonian"].shape == (9, 14, 14) and int(g.labels["n_ao"]) == 24
    assert g.labels["homo"] < g.labels["lumo"]
    assert int(g.labels["scf_cycles_guess"]) > 0
    # an extxyz output, --shard, and a model that is neither potential nor Hamiltonian are user errors
    assert_user_error(*run(["predict", tmp_path / "water.xyz", "--model", "water-ethanol-svp", "--out",
                            tmp_path / "H.extxyz"], capsys), "HDF5")
    assert_user_error(*run(["predict", tmp_path / "water.xyz", "--model", "water-ethanol-svp", "--out",
                            tmp_path / "H2.h5", "--shard", "0/2"], capsys), "--shard")
    assert_user_error(*run(["predict", tmp_path / "water.xyz", "--model", "dock-demo", "--out",
                            tmp_path / "p.extxyz"], capsys), "docking model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["H.h5", "water.xyz"]
