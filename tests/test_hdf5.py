"""eqtool HDF5 dataset format: round trips, coverage, pair fields, workers, hashing, atomicity, errors."""

from __future__ import annotations

import functools
import os
import pickle

import h5py
import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111, molecule
from ase.calculators.emt import EMT

import eqtool.io.hdf5 as H
from eqtool.data.batch import collate
from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError
from eqtool.io.hdf5 import H5Dataset, H5Writer, content_hash, read_h5, write_h5


def _labelled(atoms, stress: bool) -> AtomGraph:
    atoms.calc = EMT()
    atoms.get_potential_energy()
    atoms.get_forces()
    if stress:
        atoms.get_stress()
    return AtomGraph.from_ase(atoms)


@pytest.fixture(scope="module")
def graphs() -> list[AtomGraph]:
    """Mixed set: periodic bulk + slab with stress, molecules without stress, one unlabelled."""
    out = []
    for k, sym in enumerate(["Cu", "Al", "Ni"]):
        a = bulk(sym, cubic=True).repeat((2, 1, 1))
        a.rattle(0.05, seed=k)
        a.set_cell(a.cell * (1 + 0.01 * k), scale_atoms=True)
        out.append(_labelled(a, stress=True))
    slab = fcc111("Cu", (2, 2, 2), vacuum=4.0)
    slab.rattle(0.02, seed=7)
    out.append(_labelled(slab, stress=True))
    for name, smiles in [("H2O", "O"), ("CH4", "C"), ("NH3", "N")]:
        m = molecule(name)
        m.rattle(0.01, seed=3)
        m.info.update(name=name, smiles=smiles, note="not kept")
        out.append(_labelled(m, stress=False))
    m = molecule("CO2")
    m.info["name"] = "α-CO₂"  # non-ASCII survives
    out.append(AtomGraph.from_ase(m))  # no labels at all
    return out


def _assert_same(a: AtomGraph, b: AtomGraph) -> None:
    assert b.positions.dtype == np.float64 and np.array_equal(a.positions, b.positions)
    assert b.atomic_numbers.dtype == np.int64 and np.array_equal(a.atomic_numbers, b.atomic_numbers)
    assert b.cell.dtype == np.float64 and np.array_equal(a.cell, b.cell)
    assert b.pbc.dtype == bool and np.array_equal(a.pbc, b.pbc)
    assert set(a.labels) == set(b.labels)
    for k in a.labels:
        assert b.labels[k].shape == np.shape(a.labels[k]), k
        assert np.array_equal(a.labels[k], b.labels[k]), k


def test_round_trip_exact(tmp_path, graphs):
    path = tmp_path / "d.h5"
    h = write_h5(path, graphs, source="unit test", level_of_theory="EMT")
    back = read_h5(path)
    assert len(back) == len(graphs)
    for a, b in zip(graphs, back, strict=True):
        _assert_same(a, b)
        assert b.labels.get("energy", np.zeros(())).shape == ()
        assert b.labels.get("energy", np.zeros(())).dtype == np.float64
    ds = H5Dataset(path)
    assert ds.attrs["format"] == "eqtool-dataset" and ds.attrs["format_version"] == 1
    assert ds.attrs["source"] == "unit test" and ds.attrs["level_of_theory"] == "EMT"
    assert ds.attrs["units"]["stress"] == "eV/Å^3" and ds.attrs["units"]["pair"] == "Hartree"
    assert ds.attrs["content_hash"] == h
    assert ds.attrs["n_systems"] == len(graphs)
    assert ds.attrs["n_atoms"] == sum(g.n_atoms for g in graphs)
    assert np.array_equal(ds.n_atoms, [g.n_atoms for g in graphs])
    assert ds[3].source == f"{path}@3"
    with h5py.File(path) as f:  # the documented layout
        assert f["atoms/atomic_numbers"].dtype == np.int8
        assert f["atoms/positions"].chunks is not None and f["atoms/positions"].compression == "gzip"
        assert f["atoms/positions"].maxshape == (None, 3)
        n = np.array([g.n_atoms for g in graphs])
        assert np.array_equal(f["systems/atom_offset"][:], np.r_[0, np.cumsum(n)])
        assert np.array_equal(f["systems/pair_offset"][:], np.r_[0, np.cumsum(n**2)])
        assert f["systems/cell"].shape == (len(graphs), 3, 3) and f["systems/pbc"].shape == (len(graphs), 3)
        assert f["atoms/forces"].attrs["unit"] == "eV/Å"


def test_subset_and_index_errors(tmp_path, graphs):
    path = tmp_path / "d.h5"
    write_h5(path, graphs)
    ds = H5Dataset(path, indices=[5, 0, -1])
    assert len(ds) == 3
    _assert_same(graphs[5], ds[0])
    _assert_same(graphs[0], ds[1])
    _assert_same(graphs[-1], ds[2])
    _assert_same(graphs[0], ds[-2])
    assert np.array_equal(ds.n_atoms, [graphs[i].n_atoms for i in (5, 0, -1)])
    for bad in (3, -4):
        with pytest.raises(IndexError):
            ds[bad]
    with pytest.raises(IndexError):
        H5Dataset(path)[len(graphs)]
    with pytest.raises(IndexError):
        H5Dataset(path, indices=[len(graphs)])
    assert [g.n_atoms for g in read_h5(path, indices=[1, 2])] == [graphs[1].n_atoms, graphs[2].n_atoms]


def test_partial_label_coverage(tmp_path, graphs):
    path = tmp_path / "d.h5"
    write_h5(path, graphs)
    periodic = [g.is_periodic for g in graphs]
    with h5py.File(path) as f:
        assert np.array_equal(f["systems/has_stress"][:], periodic)
        assert np.isnan(f["systems/stress"][:][~np.array(periodic)]).all()
        assert np.array_equal(f["systems/has_energy"][:], ["energy" in g.labels for g in graphs])
        assert "systems/has_forces" in f and "systems/has_positions" not in f
    ds = H5Dataset(path)
    assert set(ds.label_keys) == {"energy", "forces", "stress", "energies"}
    assert ds.label_levels["forces"] == "node" and ds.label_levels["stress"] == "system"
    assert ds.coverage("stress") == sum(periodic)
    for g, b in zip(graphs, ds, strict=True):
        assert ("stress" in b.labels) == g.is_periodic
        assert not any(np.isnan(v).any() for v in b.labels.values() if v.dtype.kind == "f")
    assert "energy" not in ds[len(graphs) - 1].labels


def test_full_coverage_has_no_mask(tmp_path, graphs):
    path = tmp_path / "d.h5"
    write_h5(path, graphs[:3])
    with h5py.File(path) as f:
        assert not [k for k in f["systems"] if k.startswith("has_")]


def _pair_graphs(graphs):
    out = []
    for k, g in enumerate(graphs[:6]):
        n = g.n_atoms
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        block = (100.0 * i + j).reshape(n * n, 1, 1) + np.arange(6.0).reshape(1, 2, 3) / 7
        labels = {"ao_block": block, "hamiltonian": np.random.default_rng(k).normal(size=(n * n, 4, 4))}
        if k == 2:
            del labels["ao_block"]  # partial coverage at pair level too
        out.append(g._copy(labels=labels))
    return out


def test_pair_level_fields(tmp_path, graphs):
    pg = _pair_graphs(graphs)
    path = tmp_path / "p.h5"
    write_h5(path, pg, levels={"ao_block": "pair"})
    with h5py.File(path) as f:
        n = np.array([g.n_atoms for g in pg])
        assert f["pairs/ao_block"].shape == (int((n**2).sum()), 2, 3)
        assert f["pairs/hamiltonian"].attrs["unit"] == "Hartree"
        assert np.array_equal(f["systems/has_ao_block"][:], [k != 2 for k in range(6)])
        # row-major over (i, j): row pair_offset[b] + i * n + j holds (i, j)
        p0, nb = f["systems/pair_offset"][4], n[4]
        i, j = 2, nb - 1
        assert f["pairs/ao_block"][p0 + i * nb + j][0, 0] == 100.0 * i + j
    ds = H5Dataset(path)
    assert ds.label_levels == {"ao_block": "pair", "hamiltonian": "pair"}
    for a, b in zip(pg, ds, strict=True):
        _assert_same(a, b)


def test_unregistered_keys_and_bad_labels(tmp_path, graphs):
    g = graphs[0]
    path = tmp_path / "u.h5"
    write_h5(path, [g._copy(labels={"gap": np.asarray(1.5), "flags": np.arange(3)})])
    ds = H5Dataset(path)
    assert ds.label_levels == {"flags": "system", "gap": "system"}
    assert ds[0].labels["flags"].dtype == np.int64 and np.array_equal(ds[0].labels["flags"], np.arange(3))
    with pytest.raises(EqtoolError, match="edge-level"):
        write_h5(tmp_path / "e.h5", [g._copy(labels={"edge_shift": np.zeros((2, 3))})])
    with pytest.raises(EqtoolError, match="pair-level label 'blk'"):
        write_h5(tmp_path / "e.h5", [g._copy(labels={"blk": np.zeros((g.n_atoms, 3))})],
                 levels={"blk": "pair"})
    with pytest.raises(EqtoolError, match="trailing shape"):
        write_h5(tmp_path / "e.h5", [g._copy(labels={"v": np.zeros(3)}), g._copy(labels={"v": np.zeros(4)})])
    assert not list(tmp_path.glob("e.h5*"))


def test_info_strings(tmp_path, graphs):
    path = tmp_path / "i.h5"
    write_h5(path, graphs, info_keys=("name", "smiles"))
    ds = H5Dataset(path)
    assert ds.info_keys == ("name", "smiles")
    for g, b in zip(graphs, ds, strict=True):
        want = {k: str(g.info[k]) for k in ("name", "smiles") if k in g.info}
        assert b.info == want
    assert ds[len(graphs) - 1].info == {"name": "α-CO₂"}
    assert read_h5(tmp_path / "i.h5")[4].info["smiles"] == "O"
    write_h5(tmp_path / "n.h5", graphs)  # not asked -> not kept
    assert H5Dataset(tmp_path / "n.h5")[4].info == {}


def test_dataloader_workers_and_pickle(tmp_path, graphs):
    labelled = [g for g in graphs if "energy" in g.labels]
    path = tmp_path / "w.h5"
    write_h5(path, labelled)
    ds = H5Dataset(path)
    ds[0]  # the parent opens the file before the workers fork
    clone = pickle.loads(pickle.dumps(ds))
    _assert_same(labelled[1], clone[1])
    fn = functools.partial(collate, dtype=torch.float64, label_keys=["energy", "forces"])
    pickle.dumps(fn)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=fn)
    batches = list(loader)
    assert len(batches) == (len(labelled) + 1) // 2
    pos = torch.cat([b["positions"] for b in batches])
    assert torch.equal(pos, torch.from_numpy(np.concatenate([g.positions for g in labelled])))
    energy = torch.cat([b["energy"] for b in batches])
    want = torch.tensor([float(g.labels["energy"]) for g in labelled], dtype=torch.float64)
    assert torch.equal(energy, want)
    assert ds[2].n_atoms == labelled[2].n_atoms  # the parent's handle still works


def test_content_hash(tmp_path, graphs):
    h1 = write_h5(tmp_path / "a.h5", graphs, source="one")
    h2 = write_h5(tmp_path / "b.h5", graphs, source="two", level_of_theory="other")  # attrs not hashed
    assert h1 == h2 == content_hash(tmp_path / "a.h5") == H5Dataset(tmp_path / "b.h5").verify()
    assert len(h1) == 64 and int(h1, 16) >= 0
    changed = list(graphs)
    changed[2] = graphs[2]._copy(positions=graphs[2].positions + np.array([1e-12, 0, 0]))
    assert write_h5(tmp_path / "c.h5", changed) != h1
    assert write_h5(tmp_path / "d.h5", graphs[::-1]) != h1
    assert write_h5(tmp_path / "e.h5", graphs, info_keys=("name",)) != h1
    with h5py.File(tmp_path / "a.h5", "r+") as f:  # tamper with the data
        f["atoms/forces"][0, 0] += 1.0
    with pytest.raises(EqtoolError, match="content hash mismatch"):
        H5Dataset(tmp_path / "a.h5").verify()


def test_streaming_flushes_and_fast_path(tmp_path, graphs, monkeypatch):
    """Labels first seen after a flush are back-filled; append_arrays == append, bit for bit."""
    monkeypatch.setattr(H, "_FLUSH_SYSTEMS", 2)
    late = graphs[4:] + graphs[:4]  # stress first appears after two flushes
    h = write_h5(tmp_path / "s.h5", late)
    assert h == content_hash(tmp_path / "s.h5")
    for a, b in zip(late, read_h5(tmp_path / "s.h5"), strict=True):
        _assert_same(a, b)
    with h5py.File(tmp_path / "s.h5") as f:
        assert np.isnan(f["systems/stress"][:4]).all() and not f["systems/has_stress"][:4].any()

    sub = [g for g in graphs if g.is_periodic]
    keys = ("energy", "forces", "stress")
    h_graph = write_h5(tmp_path / "g.h5", [g._copy(labels={k: g.labels[k] for k in keys}) for g in sub])
    with H5Writer(tmp_path / "f.h5") as w:
        for part in (sub[:1], sub[1:]):
            w.append_arrays(
                [g.n_atoms for g in part], np.concatenate([g.positions for g in part]),
                np.concatenate([g.atomic_numbers for g in part]), cell=np.stack([g.cell for g in part]),
                pbc=np.stack([g.pbc for g in part]),
                labels={"energy": np.stack([g.labels["energy"] for g in part]),
                        "forces": np.concatenate([g.labels["forces"] for g in part]),
                        "stress": np.stack([g.labels["stress"] for g in part])})
        assert w.n_systems == len(sub)
    assert content_hash(tmp_path / "f.h5") == h_graph
    with pytest.raises(EqtoolError, match="positions"):
        with H5Writer(tmp_path / "x.h5") as w:
            w.append_arrays([2, 3], np.zeros((4, 3)), np.ones(4, int))
    assert not list(tmp_path.glob("x.h5*"))


def test_empty_dataset(tmp_path):
    path = tmp_path / "empty.h5"
    with H5Writer(path):
        pass
    ds = H5Dataset(path)
    assert len(ds) == 0 and ds.label_keys == () and ds.stats()["systems"] == 0
    assert read_h5(path) == []


def test_atomic_write(tmp_path, graphs):
    path = tmp_path / "d.h5"
    write_h5(path, graphs[:2])
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with H5Writer(path) as w:
            w.extend(graphs)
            tmps = [p for p in tmp_path.iterdir() if p.name != "d.h5"]
            assert len(tmps) == 1 and ".tmp-" in tmps[0].name  # temp file in the same folder
            raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]
    # a bad graph mid-stream: same guarantee
    bad = graphs[1]._copy(labels={"forces": np.zeros((1, 3))})
    with pytest.raises(EqtoolError, match="forces"):
        write_h5(path, [graphs[0], bad, graphs[2]])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]
    # a new file does not appear before close
    w = H5Writer(tmp_path / "new.h5")
    w.extend(graphs)
    assert not (tmp_path / "new.h5").exists()
    w.close()
    assert len(read_h5(tmp_path / "new.h5")) == len(graphs)
    with pytest.raises(EqtoolError, match="does not exist"):
        H5Writer(tmp_path / "missing" / "x.h5")


def test_read_errors(tmp_path, graphs):
    missing = tmp_path / "nope.h5"
    with pytest.raises(EqtoolError, match="not found") as e:
        H5Dataset(missing)
    assert str(missing) in str(e.value)

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(EqtoolError, match="not an eqtool dataset") as e:
        read_h5(other)
    assert str(other) in str(e.value)

    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    text = tmp_path / "text.h5"
    text.write_text("positions\n1 2 3\n")
    good = tmp_path / "good.h5"
    write_h5(good, graphs)
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    for p in (empty, text, trunc):
        with pytest.raises(EqtoolError) as e:
            H5Dataset(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value)

    newer = tmp_path / "newer.h5"
    write_h5(newer, graphs[:1])
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(EqtoolError, match="format_version 2"):
        H5Dataset(newer)


def test_stats(tmp_path, graphs):
    path = tmp_path / "d.h5"
    write_h5(path, graphs)
    st = H5Dataset(path).stats()
    assert st["systems"] == len(graphs) and st["atoms"] == sum(g.n_atoms for g in graphs)
    assert st["periodic"] == sum(g.is_periodic for g in graphs)
    z = np.concatenate([g.atomic_numbers for g in graphs])
    from ase.data import chemical_symbols

    assert st["elements"] == {chemical_symbols[k]: int((z == k).sum()) for k in sorted(set(z))}
    assert H5Dataset(path).elements == tuple(sorted(set(int(k) for k in z)))
    epa = np.array([float(g.labels["energy"]) / g.n_atoms for g in graphs if "energy" in g.labels])
    e = st["energy_per_atom"]
    np.testing.assert_allclose([e["mean"], e["std"], e["min"], e["max"]],
                               [epa.mean(), epa.std(), epa.min(), epa.max()], rtol=1e-9)
    fn = np.concatenate([np.linalg.norm(g.labels["forces"], axis=1) for g in graphs if "forces" in g.labels])
    np.testing.assert_allclose([st["force_norm"]["mean"], st["force_norm"]["max"]], [fn.mean(), fn.max()])
    assert st["labels"]["stress"]["systems"] == sum(g.is_periodic for g in graphs)
    # stats of a subset, streamed in tiny blocks
    sub = H5Dataset(path, indices=[0, 4]).stats(block_atoms=3)
    assert sub["systems"] == 2 and sub["atoms"] == graphs[0].n_atoms + graphs[4].n_atoms
    assert sub["labels"]["stress"]["systems"] == 1
    assert sub["energy_per_atom"]["max"] == max(float(graphs[i].labels["energy"]) / graphs[i].n_atoms
                                                for i in (0, 4))


def test_reopens_after_fork_and_spawn_workers(tmp_path, graphs, monkeypatch):
    path = tmp_path / "w.h5"
    write_h5(path, graphs)
    ds = H5Dataset(path)
    first = ds._file()
    assert ds._file() is first  # one handle per process
    monkeypatch.setattr(H.os, "getpid", lambda: -12345)  # as seen from a forked child
    assert ds._file() is not first
    monkeypatch.undo()
    # spawned workers receive the dataset by pickling
    fn = functools.partial(collate, dtype=torch.float64, label_keys=[])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=fn,
                                         multiprocessing_context="spawn")
    n = torch.cat([b["n_atoms"] for b in loader])
    assert n.tolist() == [g.n_atoms for g in graphs]
