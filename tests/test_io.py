"""Structure I/O: round trips for every writable format, conversions, and one test per bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest

from eqtool.data import keys as K
from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError
from eqtool.io import (
    atomic_write,
    from_pymatgen,
    from_rdkit,
    read_structures,
    to_pymatgen,
    to_rdkit,
    write_structures,
)


# ------------------------------------------------------------------------------ fixtures
def _crystal(seed: int = 0, pbc=(True, True, True)) -> AtomGraph:
    """Triclinic NaCl-like 8-atom cell with awkward floats and all label kinds."""
    rng = np.random.default_rng(seed)
    cell = np.array([[5.1, 0.0, 0.0], [0.3, 5.3, 0.0], [-0.2, 0.4, 5.7]]) + rng.normal(0, 0.01, (3, 3))
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                     [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]], dtype=float)
    frac += rng.normal(0, 0.02, frac.shape)
    frac %= 1.0
    stress = rng.normal(0, 1e-3, (3, 3))
    return AtomGraph(
        positions=frac @ cell, atomic_numbers=[11] * 4 + [17] * 4, cell=cell, pbc=pbc,
        labels={K.ENERGY: np.asarray(-27.123456789012345 + rng.normal()),
                K.FORCES: rng.normal(0, 0.3, (8, 3)),
                K.STRESS: stress + stress.T,
                K.ENERGIES: rng.normal(0, 1, 8),
                K.CHARGES: rng.normal(0, 0.5, 8)},
        info={"name": 'a "quoted" \\ name', "step": 7, "temperature": 300.125, "ok": True},
    )


def _water() -> AtomGraph:
    return AtomGraph(positions=[[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]],
                     atomic_numbers=[8, 1, 1], labels={K.ENERGY: np.asarray(-14.2)})


def _files(folder) -> set[str]:
    return set(os.listdir(folder))


def _raises(match_file, *args, **kwargs) -> EqtoolError:
    """Call read_structures, check the EqtoolError is one line naming ``match_file``."""
    with pytest.raises(EqtoolError) as info:
        read_structures(*args, **kwargs)
    exc = info.value
    assert type(exc) is EqtoolError
    assert "\n" not in str(exc)
    assert str(match_file) in exc.source
    return exc


def _write(path, text: str):
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ atomic_write
def test_atomic_write_success_and_error_leave_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_write(target) as fh:
        fh.write("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "first"  # old content kept
    assert _files(tmp_path) == {"out.txt"}
    with pytest.raises(EqtoolError, match="missing"):
        with atomic_write(tmp_path / "missing" / "x.txt"):
            pass


# ------------------------------------------------------------------------------ round trips
def test_extxyz_round_trip_is_exact(tmp_path):
    frames = [_crystal(0), _crystal(1, pbc=(True, True, False)), _water()]
    frames[2].info.update({"smiles": "C[C@H](O)/C=C/Cl", "bonds": np.array([[0, 1, 1], [0, 2, 1]]),
                           "empty": "", "number_string": "3"})
    path = tmp_path / "data.extxyz"
    write_structures(path, frames)
    back = read_structures(path)
    assert len(back) == 3
    for k, (a, b) in enumerate(zip(frames, back, strict=True)):
        assert b.source == f"{path}@{k}"
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.cell, b.cell)
        assert np.array_equal(a.pbc, b.pbc)
        assert np.array_equal(a.atomic_numbers, b.atomic_numbers)
        assert set(a.labels) == set(b.labels)
        for key in a.labels:
            assert np.array_equal(np.asarray(a.labels[key]), np.asarray(b.labels[key])), key
    for key in ("name", "step", "temperature", "ok"):
        assert back[0].info[key] == frames[0].info[key]
        assert type(back[0].info[key]) is type(frames[0].info[key])
    assert back[2].info["smiles"] == "C[C@H](O)/C=C/Cl"
    assert back[2].info["empty"] == "" and back[2].info["number_string"] == "3"
    assert np.array_equal(back[2].info["bonds"], frames[2].info["bonds"])
    assert _files(tmp_path) == {"data.extxyz"}


def test_extxyz_readable_by_ase_and_plain_xyz(tmp_path):
    import ase.io

    path = tmp_path / "a.xyz"
    write_structures(path, _crystal())
    atoms = ase.io.read(path)
    assert np.array_equal(atoms.positions, _crystal().positions)
    assert atoms.get_potential_energy() == float(_crystal().labels[K.ENERGY])
    text = "3\nwater\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n"
    plain = _write(tmp_path / "plain.xyz", text)
    (g,) = read_structures(plain)
    assert g.atomic_numbers.tolist() == [8, 1, 1] and not g.is_periodic


def test_traj_round_trip_is_exact(tmp_path):
    frames = [_crystal(0), _crystal(3)]
    path = tmp_path / "t.traj"
    write_structures(path, frames)
    back = read_structures(path)
    for a, b in zip(frames, back, strict=True):
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.cell, b.cell)
        for key in (K.ENERGY, K.FORCES, K.STRESS):
            assert np.array_equal(a.labels[key], b.labels[key])
    assert read_structures(path, index=-1)[0].source == f"{path}@1"


def _cellpar(cell):
    from ase.geometry import cell_to_cellpar

    return cell_to_cellpar(cell)


def test_cif_round_trip(tmp_path):
    g = _crystal()
    path = tmp_path / "x.cif"
    write_structures(path, g)
    for fmt in (None, "pymatgen-cif"):
        (b,) = read_structures(path, format=fmt)
        assert b.atomic_numbers.tolist() == g.atomic_numbers.tolist() or fmt == "pymatgen-cif"
        np.testing.assert_allclose(_cellpar(b.cell), _cellpar(g.cell), atol=1e-6)
        # CIF stores cell parameters: compare fractional coordinates (order-free for pymatgen)
        fa = np.linalg.solve(g.cell.T, g.positions.T).T % 1.0
        fb = np.linalg.solve(b.cell.T, b.positions.T).T % 1.0
        d = fa[:, None, :] - fb[None, :, :]
        d -= np.round(d)
        assert np.abs(d).max(-1).min(1).max() < 1e-6


def test_poscar_round_trip(tmp_path):
    g = _crystal()
    path = tmp_path / "POSCAR"
    write_structures(path, g)
    (b,) = read_structures(path)
    assert b.atomic_numbers.tolist() == g.atomic_numbers.tolist()
    np.testing.assert_allclose(b.positions, g.positions, atol=1e-6)
    np.testing.assert_allclose(b.cell, g.cell, atol=1e-6)
    assert b.pbc.all()
    assert read_structures(tmp_path / "POSCAR", format="vasp")[0].n_atoms == 8


def test_sdf_round_trip_with_bonds_and_energy(tmp_path):
    (g,) = read_structures("CC(=O)[O-]")
    g.labels[K.ENERGY] = np.asarray(-1234.5678901234)
    for fmt, atol in (("sdf", 1e-4), ("sdf-v3000", 1e-6)):  # V2000 keeps 4 decimals, V3000 six
        path = tmp_path / f"{fmt}.sdf"
        write_structures(path, [g, g], format=fmt)
        back = read_structures(path)
        assert len(back) == 2
        b = back[1]
        assert b.source == f"{path}@1"
        assert b.atomic_numbers.tolist() == g.atomic_numbers.tolist()
        assert np.abs(b.positions - g.positions).max() <= atol / 2 + 1e-12
        assert np.array_equal(b.info["bonds"], g.info["bonds"])
        assert b.info["smiles"] == "CC(=O)[O-]" and b.info["charge"] == -1
        assert float(b.labels[K.ENERGY]) == float(g.labels[K.ENERGY])


def test_sdf_write_perceives_bonds_when_missing(tmp_path):
    from ase.build import molecule

    (g,) = read_structures(molecule("C6H6"))
    assert "bonds" not in g.info
    path = tmp_path / "benzene.mol"
    write_structures(path, g)
    (b,) = read_structures(path)
    assert b.info["smiles"] == "c1ccccc1"
    orders = sorted(b.info["bonds"][:, 2].tolist())
    assert orders == [1] * 9 + [2] * 3  # Kekulé form: 6 C-H + 3 C-C single, 3 C=C


def test_mol2_read(tmp_path):
    text = """@<TRIPOS>MOLECULE
water
 3 2 0 0 0
SMALL
NO_CHARGES

@<TRIPOS>ATOM
      1 O1          0.0000    0.0000    0.1173 O.3     1  HOH1        0.0000
      2 H1          0.0000    0.7572   -0.4692 H       1  HOH1        0.0000
      3 H2          0.0000   -0.7572   -0.4692 H       1  HOH1        0.0000
@<TRIPOS>BOND
     1     1     2    1
     2     1     3    1
"""
    (g,) = read_structures(_write(tmp_path / "w.mol2", text))
    assert g.atomic_numbers.tolist() == [8, 1, 1]
    assert g.info["bonds"].tolist() == [[0, 1, 1], [0, 2, 1]]


def test_pdb_and_ase_db(tmp_path):
    import ase.db
    import ase.io

    w = _water()
    ase.io.write(tmp_path / "w.pdb", w.to_ase())
    (p,) = read_structures(tmp_path / "w.pdb")
    np.testing.assert_allclose(p.positions, w.positions, atol=1e-3)
    with ase.db.connect(tmp_path / "s.db") as db:
        for g in (_crystal(0), _water()):
            db.write(g.to_ase())
    back = read_structures(tmp_path / "s.db")
    assert [b.n_atoms for b in back] == [8, 3]
    assert np.array_equal(back[0].positions, _crystal(0).positions)
    assert back[1].source.endswith("s.db@1")


def test_pymatgen_structure_and_molecule_round_trip(tmp_path):
    g = _crystal()
    s = to_pymatgen(g)
    assert type(s).__name__ == "Structure"
    b = from_pymatgen(s)
    np.testing.assert_allclose(b.positions, g.positions, atol=1e-12)
    assert np.array_equal(b.cell, g.cell) and b.pbc.all()
    for key in (K.ENERGY, K.FORCES, K.STRESS, K.CHARGES):
        np.testing.assert_allclose(b.labels[key], g.labels[key], atol=1e-12)
    (r,) = read_structures(s)
    assert r.source == "Structure@0"
    m = to_pymatgen(_water())
    assert type(m).__name__ == "Molecule"
    w = from_pymatgen(m)
    np.testing.assert_allclose(w.positions, _water().positions, atol=1e-12)
    assert not w.is_periodic and float(w.labels[K.ENERGY]) == -14.2


def test_pymatgen_disordered_structure_rejected():
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(EqtoolError, match="disordered"):
        read_structures(s)


def test_smiles_to_3d_has_sensible_bonds():
    (g,) = read_structures("CCO")
    assert g.source == "smiles:CCO@0"
    assert sorted(g.atomic_numbers.tolist()) == [1] * 6 + [6, 6, 8]
    lengths = {}
    for i, j, order in g.info["bonds"].tolist():
        assert order == 1
        pair = tuple(sorted((int(g.atomic_numbers[i]), int(g.atomic_numbers[j]))))
        lengths.setdefault(pair, []).append(np.linalg.norm(g.positions[i] - g.positions[j]))
    np.testing.assert_allclose(lengths[(6, 6)], 1.51, atol=0.04)
    np.testing.assert_allclose(lengths[(6, 8)], 1.42, atol=0.04)
    np.testing.assert_allclose(lengths[(1, 6)], 1.09, atol=0.03)
    np.testing.assert_allclose(lengths[(1, 8)], 0.97, atol=0.03)
    (again,) = read_structures("CCO", seed=0xF00D)
    assert np.array_equal(again.positions, g.positions)  # deterministic for a seed
    (forced,) = read_structures("c1ccccc1", format="smiles", seed=7)
    assert forced.info["smiles"] == "c1ccccc1"


def test_rdkit_round_trip():
    (g,) = read_structures("c1ccncc1")
    mol = to_rdkit(g)
    b = from_rdkit(mol)
    assert np.array_equal(b.positions, g.positions)
    assert np.array_equal(b.info["bonds"], g.info["bonds"])


def test_index_selection_and_lists(tmp_path):
    frames = [_crystal(k) for k in range(4)]
    path = tmp_path / "many.xyz"
    write_structures(path, frames)
    sel = read_structures(path, index="1:4:2")
    assert [g.source for g in sel] == [f"{path}@1", f"{path}@3"]
    assert np.array_equal(sel[1].positions, frames[3].positions)
    assert read_structures(path, index=-1)[0].source == f"{path}@3"
    mixed = read_structures([path, "O", _water().to_ase()], index="0")
    assert [g.n_atoms for g in mixed] == [8, 3, 3]
    assert mixed[2].source == "ase.Atoms@2"
    with pytest.raises(EqtoolError, match="frame 9 requested"):
        read_structures(path, index=9)
    with pytest.raises(EqtoolError, match="bad frame index"):
        read_structures(path, index="a:b")


# ------------------------------------------------------------------------------ bad input
def test_missing_file(tmp_path):
    exc = _raises(tmp_path / "nope.xyz", tmp_path / "nope.xyz")
    assert "no such file" in exc.message
    _raises("nope.xyz", "nope.xyz")  # a string that looks like a file name is not tried as SMILES


def test_empty_file(tmp_path):
    for name in ("e.xyz", "e.cif", "e.sdf", "POSCAR"):
        exc = _raises(tmp_path / name, _write(tmp_path / name, ""))
        assert "empty" in exc.message


def test_truncated_extxyz_names_frame_and_line(tmp_path):
    text = "1\n\nH 0 0 0\n5\n\nH 0 0 0\nH 0 0 1\nH 0 0 2\n"
    exc = _raises(tmp_path / "t.xyz", _write(tmp_path / "t.xyz", text))
    assert exc.where == "frame 1, line 4"
    assert "5" in exc.message and "3" in exc.message


def test_garbled_extxyz(tmp_path):
    exc = _raises(tmp_path / "g.xyz", _write(tmp_path / "g.xyz", "hello world\nfoo\n"))
    assert exc.where == "frame 0, line 1" and "atom count" in exc.message
    text = "2\nProperties=species:S:1:pos:R:3\nH 0 0 0\nH zero 0 1\n"
    exc = _raises(tmp_path / "g2.xyz", _write(tmp_path / "g2.xyz", text))
    assert exc.where == "frame 0"


def test_unknown_element(tmp_path):
    text = "2\n\nH 0 0 0\nH 0 0 1\n2\n\nXx 0 0 0\nH 0 0 1\n"
    exc = _raises(tmp_path / "x.xyz", _write(tmp_path / "x.xyz", text))
    assert "'Xx'" in exc.message and exc.where == "frame 1, line 7"


def test_nan_coordinates(tmp_path):
    text = "2\n\nH 0 0 0\nH 0 nan 1\n"
    exc = _raises(tmp_path / "n.xyz", _write(tmp_path / "n.xyz", text))
    assert "NaN" in exc.message and exc.where == "frame 0"
    text = "2\n\nH 0 0 0\nH 0 inf 1\n"
    _raises(tmp_path / "i.xyz", _write(tmp_path / "i.xyz", text))


def test_overlapping_atoms(tmp_path):
    text = "1\n\nH 0 0 0\n2\n\nH 0 0 0\nH 0 0 0.05\n"
    exc = _raises(tmp_path / "o.xyz", _write(tmp_path / "o.xyz", text))
    assert "overlap" in exc.message and exc.where == "frame 1"


def test_zero_volume_cell(tmp_path):
    text = ('1\nLattice="3 0 0 0 3 0 0 0 0" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
            "Si 0 0 0\n")
    exc = _raises(tmp_path / "z.xyz", _write(tmp_path / "z.xyz", text))
    assert "zero-volume" in exc.message and exc.where == "frame 0"


def test_unknown_format_and_extension(tmp_path):
    path = _write(tmp_path / "a.foo", "1\n\nH 0 0 0\n")
    exc = _raises(path, path)
    assert "extension '.foo'" in exc.message
    exc = _raises(path, path, format="bogus")
    assert "bogus" in exc.message
    assert read_structures(path, format="xyz")[0].n_atoms == 1


def test_bad_smiles():
    with pytest.raises(EqtoolError) as info:
        read_structures("C1CC", format="smiles")
    assert "unclosed ring" in info.value.message and "C1CC" in info.value.source
    with pytest.raises(EqtoolError) as info:
        read_structures("CC(C)(C)(C)(C)C")
    assert "not a valid SMILES" in info.value.message and "valence" in info.value.message


def test_bad_sdf_record_names_frame(tmp_path):
    from rdkit import Chem

    block = Chem.MolToMolBlock(to_rdkit(read_structures("O")[0]))
    ammonium = Chem.MolToMolBlock(to_rdkit(read_structures("[NH4+]")[0]))
    bad = "\n".join(ln for ln in ammonium.splitlines() if not ln.startswith("M  CHG")) + "\n"
    garbled = "\n".join(block.splitlines()[:5]) + "\n"
    for name, text in (("v.sdf", block + "$$$$\n" + bad + "$$$$\n"),
                       ("g.sdf", block + "$$$$\n" + garbled + "$$$$\n")):
        exc = _raises(tmp_path / name, _write(tmp_path / name, text))
        assert exc.where == "frame 1", (name, str(exc))
    assert "valence" in _raises(tmp_path / "v.sdf", tmp_path / "v.sdf").message.lower()


def test_2d_sdf_rejected(tmp_path):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles("CCO")
    AllChem.Compute2DCoords(mol)
    exc = _raises(tmp_path / "flat.sdf", _write(tmp_path / "flat.sdf", Chem.MolToMolBlock(mol) + "$$$$\n"))
    assert "2D" in exc.message and exc.where == "frame 0"


# ------------------------------------------------------------------------------ bad writes
def _write_fails(path, graphs, match, **kwargs):
    before = _files(path.parent) if path.parent.is_dir() else None
    with pytest.raises(EqtoolError, match=match) as info:
        write_structures(path, graphs, **kwargs)
    assert str(path) in info.value.source
    if before is not None:
        assert _files(path.parent) == before  # nothing written, no temp file left
    return info.value


def test_write_missing_folder(tmp_path):
    _write_fails(tmp_path / "nope" / "out.xyz", [_water()], "does not exist")


def test_write_poscar_many_and_molecule(tmp_path):
    _write_fails(tmp_path / "POSCAR", [_crystal(0), _crystal(1)], "one structure")
    _write_fails(tmp_path / "m.cif", [_water()], "needs a 3D cell")


def test_write_sdf_errors_leave_old_file(tmp_path):
    path = tmp_path / "out.sdf"
    write_structures(path, _water())
    old = path.read_text()
    exc = _write_fails(path, [_water(), _crystal()], "periodic")
    assert exc.where == "frame 1"
    assert path.read_text() == old
    odd = AtomGraph(positions=[[0, 0, 0], [0, 0, 1.2]], atomic_numbers=[6, 6],
                    info={"bonds": np.array([[0, 5, 1]])})
    _write_fails(path, [odd], "bad atom pair")
    radical = AtomGraph(positions=[[0, 0, 0], [0, 0, 0.97]], atomic_numbers=[8, 1], source="oh.xyz@4")
    exc = _write_fails(path, [_water(), radical], "cannot perceive bonds")
    assert exc.where == "frame 1" and "oh.xyz@4" in exc.message
    assert path.read_text() == old


def test_write_unknown_format(tmp_path):
    _write_fails(tmp_path / "x.foo", [_water()], "extension")
    _write_fails(tmp_path / "x.xyz", [_water()], "cannot write format", format="pdf")
    _write_fails(tmp_path / "x.xyz", [], "no structures")
