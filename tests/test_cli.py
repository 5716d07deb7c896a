"""The ``eqtool`` command line: help, placeholders, info, data convert/info/split, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from eqtool.cli import info as info_cmd
from eqtool.cli._datasets import split_indices
from eqtool.cli.main import main
from eqtool.errors import EqtoolError

ALL_COMMANDS = ("train", "export", "relax", "md", "generate", "dock", "predict", "data", "sbatch", "info",
                "check")


def run(argv, capsys):
    """Run ``eqtool *argv`` in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    code = exc.value.code
    return (0 if code is None else code), out, err


def assert_user_error(code, out, err, *needles):
    """Exit 2, one line on stderr starting with 'error:', naming every needle, no traceback."""
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


# ----------------------------------------------------------------------------- fixtures
def _labelled(atoms: Atoms, rng: np.random.Generator) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(
        atoms, energy=float(rng.normal()) * len(atoms), forces=rng.normal(size=(len(atoms), 3))
    )
    return atoms


@pytest.fixture
def extxyz(tmp_path) -> Path:
    """7 labelled frames: 4 water molecules (3 atoms) and 3 periodic Cu cells (4 atoms) = 24 atoms."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(4):
        w = molecule("H2O")
        w.positions += 0.05 * rng.normal(size=w.positions.shape) + i
        frames.append(_labelled(w, rng))
    for _ in range(3):
        c = bulk("Cu", "fcc", a=3.6, cubic=True)
        c.rattle(0.05, seed=int(rng.integers(1000)))
        frames.append(_labelled(c, rng))
    path = tmp_path / "train.extxyz"
    write(path, frames, format="extxyz")
    return path


def _xyz_text(symbols, positions, lattice=None) -> str:
    header = f'Lattice="{" ".join(map(str, lattice))}" pbc="T T T" ' if lattice is not None else ""
    lines = [str(len(symbols)), header + "Properties=species:S:1:pos:R:3"]
    lines += [f"{s} {x} {y} {z}" for s, (x, y, z) in zip(symbols, positions, strict=True)]
    return "\n".join(lines) + "\n"


GOOD_FRAME = _xyz_text(["O", "H", "H"], [(0, 0, 0), (0.96, 0, 0), (-0.24, 0.93, 0)])

# name -> (file content, words the error line must contain)
BAD_INPUTS = {
    "empty": ("", ("empty",)),
    "truncated": (GOOD_FRAME + "3\nProperties=species:S:1:pos:R:3\nO 0 0 0\nH 0.9", ("frame 1",)),
    "garbled": ("this is not\nan extxyz file at all {{{\n", ()),
    "unknown_element": (GOOD_FRAME + _xyz_text(["Xx", "H"], [(0, 0, 0), (1, 0, 0)]), ("element",)),
    "nan": (_xyz_text(["O", "H"], [(0, 0, 0), ("nan", 0, 0)]), ("nan",)),
    "overlap": (GOOD_FRAME + _xyz_text(["O", "H"], [(0, 0, 0), (0.01, 0, 0)]), ("overlap",)),
    "zero_volume": (_xyz_text(["Cu"], [(0, 0, 0)], lattice=[3.6, 0, 0, 0, 3.6, 0, 0, 0, 0]), ("volume",)),
}


def _bad_file(tmp_path: Path, case: str) -> tuple[Path, tuple[str, ...]]:
    text, words = BAD_INPUTS[case]
    path = tmp_path / f"{case}.extxyz"
    path.write_text(text)
    return path, words


def _foreign_h5(tmp_path: Path) -> Path:
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["spectrum"] = np.arange(10.0)
        f.attrs["creator"] = "someone else"
    return path


# ----------------------------------------------------------------------------- help
def test_help_lists_all_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    panel = out.split("Commands", 1)[1]
    for name in ALL_COMMANDS:
        assert f" {name} " in panel, name
    positions = [panel.index(f" {name} ") for name in ALL_COMMANDS]
    assert positions == sorted(positions)


HELP_ARGVS = [[c] for c in ALL_COMMANDS] + [["data", c] for c in ("convert", "info", "split")]


@pytest.mark.parametrize("argv", HELP_ARGVS)
def test_every_help_has_an_example(argv, capsys):
    code, out, _ = run([*argv, "--help"], capsys)
    assert code == 0
    assert "Example:" in out, argv


def test_unknown_option_is_a_usage_error(capsys):
    code, _, err = run(["info", "--no-such-option"], capsys)
    assert code == 2
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- info
def test_info_table_and_json(capsys):
    code, out, _ = run(["info"], capsys)
    assert code == 0
    for word in ("torch", "e3nn", "vesin", "CUDA", "MPS", "default dtype"):
        assert word in out
    code, out, _ = run(["info", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert set(report["versions"]) >= {"eqtool", "torch", "e3nn", "ase", "pymatgen", "rdkit",
                                       "lightning", "h5py", "numpy", "vesin"}
    assert report["versions"]["numpy"] == np.__version__
    t = report["torch"]
    assert isinstance(t["num_threads"], int) and t["num_threads"] >= 1
    assert isinstance(t["num_interop_threads"], int)
    assert isinstance(t["cuda_available"], bool) and isinstance(t["mps_available"], bool)
    assert t["default_dtype"] in ("float32", "float64")
    assert report["python"] == sys.version.split()[0]


# ----------------------------------------------------------------------------- error contract
def test_internal_error_is_one_line_exit_1(monkeypatch, capsys):
    def boom():
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(info_cmd, "collect", boom)
    code, out, err = run(["info"], capsys)
    assert code == 1
    assert "Traceback" not in out + err
    assert err.strip() == ("error: internal error: RuntimeError: kaboom second line "
                           "(rerun with --debug for the traceback)")
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["--debug", "info"])


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(info_cmd, "collect", interrupted)
    code, out, err = run(["info"], capsys)
    assert code == 130
    assert "Traceback" not in out + err


def test_debug_reraises_user_errors(tmp_path):
    with pytest.raises(EqtoolError, match="not found"):
        main(["--debug", "data", "info", str(tmp_path / "missing.extxyz")])


def test_debug_shows_traceback_in_a_real_process(tmp_path):
    missing = tmp_path / "missing.extxyz"
    cmd = [sys.executable, "-m", "eqtool.cli.main"]
    plain = subprocess.run([*cmd, "data", "info", str(missing)], capture_output=True, text=True)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [f"error: {missing}: file not found"]
    debug = subprocess.run([*cmd, "--debug", "data", "info", str(missing)], capture_output=True, text=True)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "EqtoolError" in debug.stderr


# ----------------------------------------------------------------------------- data convert + info
def test_convert_then_info_shows_counts(extxyz, tmp_path, capsys):
    out_h5 = tmp_path / "train.h5"
    code, _, err = run(["data", "convert", extxyz, out_h5, "--level-of-theory", "PBE"], capsys)
    assert code == 0, err
    assert out_h5.is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files

    code, out, _ = run(["data", "info", out_h5, "--json"], capsys)
    assert code == 0
    stats = json.loads(out)
    flat = json.dumps(stats)
    assert _find_number(stats, "systems") == 7
    assert _find_number(stats, "atoms") == 24
    for element in ("H", "O", "Cu"):
        assert f'"{element}"' in flat

    code, table, _ = run(["data", "info", out_h5], capsys)
    assert code == 0
    assert "7" in table and "24" in table and "Cu" in table

    # the same statistics straight from the structure file
    code, out, _ = run(["data", "info", extxyz, "--json"], capsys)
    assert code == 0
    direct = json.loads(out)
    assert _find_number(direct, "systems") == 7
    assert _find_number(direct, "atoms") == 24
    for key in ("systems", "atoms", "periodic", "atoms_per_system", "elements", "labels"):
        assert direct[key] == stats[key], key
    for key in ("energy_per_atom", "force_norm"):
        assert direct[key] == pytest.approx(stats[key], rel=1e-9, abs=1e-12), key


def test_convert_many_inputs_counts_all_frames(extxyz, tmp_path, capsys):
    second = tmp_path / "more.xyz"
    write(second, [molecule("CH4"), molecule("NH3")], format="extxyz")
    first_h5 = tmp_path / "first.h5"
    assert run(["data", "convert", extxyz, first_h5], capsys)[0] == 0
    out_h5 = tmp_path / "all.h5"
    code, _, err = run(["data", "convert", first_h5, second, out_h5], capsys)  # .h5 inputs are merged
    assert code == 0, err
    code, out, _ = run(["data", "info", out_h5, "--json"], capsys)
    stats = json.loads(out)
    assert _find_number(stats, "systems") == 9
    assert _find_number(stats, "atoms") == 24 + 5 + 4
    assert stats["elements"] == {"H": 8 + 4 + 3, "C": 1, "N": 1, "O": 4, "Cu": 12}


def _find_number(stats: dict, word: str) -> int:
    """The integer statistic whose key is ``n_<word>``/``num_<word>``/``<word>`` (searched recursively)."""
    candidates = {word, f"n_{word}", f"num_{word}", f"number_of_{word}", f"{word}_count"}
    for key, value in stats.items():
        if key in candidates and isinstance(value, int):
            return value
    for value in stats.values():
        if isinstance(value, dict):
            try:
                return _find_number(value, word)
            except KeyError:
                pass
    raise KeyError(f"no count of {word!r} in {sorted(stats)}")


def test_convert_needs_an_h5_output(extxyz, tmp_path, capsys):
    code, out, err = run(["data", "convert", extxyz, tmp_path / "out.xyz"], capsys)
    assert_user_error(code, out, err, "out.xyz", ".h5")
    code, out, err = run(["data", "convert", tmp_path / "only.h5"], capsys)  # a usage error (Typer's panel)
    assert code == 2 and "Missing argument" in err and "Traceback" not in out + err


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_convert_bad_input(case, extxyz, tmp_path, capsys):
    bad, words = _bad_file(tmp_path, case)
    out_h5 = tmp_path / "out.h5"
    code, out, err = run(["data", "convert", extxyz, bad, out_h5], capsys)
    assert_user_error(code, out, err, bad.name, *words)
    assert len(err.split(bad.name, 1)[1].strip(" :")) > 10  # the problem is said after the name
    assert not out_h5.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["train.extxyz", bad.name])


@pytest.mark.parametrize("case", ["nan", "overlap", "unknown_element", "zero_volume"])
def test_data_info_bad_structure_file(case, tmp_path, capsys):
    bad, words = _bad_file(tmp_path, case)
    code, out, err = run(["data", "info", bad], capsys)
    assert_user_error(code, out, err, bad.name, *words)


def test_bad_input_leaves_existing_output_untouched(extxyz, tmp_path, capsys):
    out_h5 = tmp_path / "out.h5"
    code, _, _ = run(["data", "convert", extxyz, out_h5], capsys)
    assert code == 0
    before = out_h5.read_bytes()
    bad, _ = _bad_file(tmp_path, "nan")
    code, out, err = run(["data", "convert", bad, out_h5], capsys)
    assert_user_error(code, out, err, bad.name)
    assert out_h5.read_bytes() == before


def test_missing_input(extxyz, tmp_path, capsys):
    missing = tmp_path / "nope.extxyz"
    out_h5 = tmp_path / "out.h5"
    for argv in (["data", "convert", extxyz, missing, out_h5], ["data", "info", missing],
                 ["data", "split", missing]):
        code, out, err = run(argv, capsys)
        assert_user_error(code, out, err, "nope.extxyz", "not found")
    assert not out_h5.exists()


def test_frame_is_named(tmp_path, capsys):
    bad, _ = _bad_file(tmp_path, "overlap")  # frame 0 is fine, frame 1 overlaps
    code, out, err = run(["data", "info", bad], capsys)
    assert_user_error(code, out, err, bad.name, "frame 1")


def test_foreign_hdf5(extxyz, tmp_path, capsys):
    foreign = _foreign_h5(tmp_path)
    before = foreign.read_bytes()
    for argv in (["data", "info", foreign], ["data", "split", foreign]):
        code, out, err = run(argv, capsys)
        assert_user_error(code, out, err, "foreign.h5")
    out_h5 = tmp_path / "out.h5"
    code, out, err = run(["data", "convert", extxyz, foreign, out_h5], capsys)
    assert_user_error(code, out, err, "foreign.h5")
    assert not out_h5.exists()
    assert foreign.read_bytes() == before
    assert not list(tmp_path.glob("*.split.json"))


# ----------------------------------------------------------------------------- data split
def _split(file: Path, capsys, *args) -> dict:
    code, _, err = run(["data", "split", file, *args], capsys)
    assert code == 0, err
    path = file.parent / f"{file.name}.split.json"
    for i, a in enumerate(args):
        if a == "--out-dir":
            path = Path(args[i + 1]) / f"{file.name}.split.json"
    return json.loads(path.read_text())


def test_split_reproducible_disjoint_covering(tmp_path, capsys):
    frames = []
    for i in range(40):
        m = molecule("H2O")
        m.positions += i
        frames.append(m)
    src = tmp_path / "many.extxyz"
    write(src, frames, format="extxyz")
    h5 = tmp_path / "many.h5"
    assert run(["data", "convert", src, h5], capsys)[0] == 0

    a = _split(h5, capsys, "--val", "0.2", "--test", "0.1", "--seed", "3")
    (tmp_path / "other").mkdir()
    b = _split(h5, capsys, "--val", "0.2", "--test", "0.1", "--seed", "3", "--out-dir", tmp_path / "other")
    c = _split(h5, capsys, "--val", "0.2", "--test", "0.1", "--seed", "4", "--out-dir", tmp_path / "other")
    assert a == b
    assert a["train"] != c["train"]
    for s in (a, c):
        assert s["n_systems"] == 40
        assert (len(s["train"]), len(s["val"]), len(s["test"])) == (28, 8, 4)
        parts = [set(s["train"]), set(s["val"]), set(s["test"])]
        assert sum(map(len, parts)) == 40  # sizes add up and (with the union below) disjoint
        assert set().union(*parts) == set(range(40))
    # a structure file gives the same split as its HDF5 conversion
    d = _split(src, capsys, "--val", "0.2", "--test", "0.1", "--seed", "3")
    assert {k: d[k] for k in ("train", "val", "test")} == {k: a[k] for k in ("train", "val", "test")}


@pytest.mark.parametrize("val,test", [("0.6", "0.5"), ("-0.1", "0.1"), ("0.1", "1.0"), ("nan", "0.1"),
                                      ("0.5", "0.5")])
def test_split_rejects_bad_fractions(val, test, extxyz, capsys):
    code, out, err = run(["data", "split", extxyz, "--val", val, "--test", test], capsys)
    assert_user_error(code, out, err, "--val")
    assert not list(extxyz.parent.glob("*.split.json"))


def test_split_indices_properties():
    for n in (1, 2, 7, 100):
        for val, test in ((0.0, 0.0), (0.1, 0.1), (0.3, 0.2)):
            try:
                parts = split_indices(n, val, test, seed=1)
            except EqtoolError:
                assert n - round(val * n) - round(test * n) < 1
                continue
            all_idx = parts["train"] + parts["val"] + parts["test"]
            assert sorted(all_idx) == list(range(n))
            assert len(parts["test"]) == round(test * n) and len(parts["val"]) == round(val * n)
            assert parts == split_indices(n, val, test, seed=1)


def test_split_file_equals_the_split_training_makes_without_one():
    from eqtool.config.schema import DataConfig
    from eqtool.data.datamodule import resolve_splits

    for n, val, test, seed in ((100, 0.1, 0.1, 0), (37, 0.2, 0.05, 3)):
        cfg = DataConfig(path="x.h5", val_fraction=val, test_fraction=test, seed=seed)
        trained = resolve_splits(cfg, n)
        written = split_indices(n, val, test, seed)
        assert {k: v.tolist() for k, v in trained.items()} == written


def test_split_out_dir_must_exist(extxyz, tmp_path, capsys):
    code, out, err = run(["data", "split", extxyz, "--out-dir", tmp_path / "nowhere"], capsys)
    assert_user_error(code, out, err, "nowhere")


def test_no_cwd_litter(extxyz, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    assert run(["data", "convert", extxyz, "x.h5"], capsys)[0] == 0
    assert set(os.listdir(tmp_path)) == before | {"x.h5"}


@pytest.mark.parametrize("argv, needle", [
    (["check", "--model", "water-ethanol-svp"], "Hamiltonian model, not a potential"),
    (["relax", "{xyz}", "--model", "dock-demo", "--out", "{tmp}/r.extxyz"], "docking model, not a potential"),
    (["md", "{xyz}", "--model", "qm9-edm", "--steps", "2", "--out", "{tmp}/m.h5"], "generative"),
    (["predict", "{xyz}", "--model", "qm9-edm", "--out", "{tmp}/p.extxyz"], "generative"),
    (["dock", "--receptor", "{pdb}", "--ligand", "CCO", "--out", "{tmp}/d.sdf", "--method", "model",
      "--model", "cu-emt"], "not a docking model"),
])
def test_a_model_of_the_wrong_kind_is_one_line(tmp_path, capsys, argv, needle):
    """Every command names the kind of model it got when it is not the kind it needs; nothing written."""
    from ase.build import molecule
    from conftest import run

    xyz = tmp_path / "water.xyz"
    molecule("H2O").write(xyz)
    pdb = Path(__file__).resolve().parents[1] / "data" / "docking" / "1s3v" / "1s3v_protein.pdb"
    code, out, err = run([a.format(xyz=xyz, pdb=pdb, tmp=tmp_path) for a in argv], capsys)
    assert_user_error(code, out, err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["water.xyz"]


def test_scalar_table_flattens_nested_metrics():
    from rich.console import Console

    from eqtool.cli.train import scalar_table

    console = Console(record=True, width=120)
    console.print(scalar_table({"n": 3, "molecules": {"water": {"h_mae": 82.3, "psi": 99.99}}, "ok": True,
                                "units": {"h_mae": "µHa"}}, "t"))
    text = console.export_text()
    assert "molecules/water/h_mae" in text and "82.3" in text and "units: h_mae µHa" in text
    assert "│ ok " not in text  # booleans are not numbers
