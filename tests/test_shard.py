"""Sharded, resumable batch runs without SLURM: shards, manifests, merge, `eqtool sbatch --dry-run`.

The same features on a real SLURM are tested in tests/cluster/.
"""

import json
import subprocess

import numpy as np
import pytest
from conftest import CU_MODEL, assert_user_error, run

from eqtool.errors import EqtoolError
from eqtool.jobs import assign_shards, parse_shard, shard_from_env, shard_path
from eqtool.jobs.manifest import manifest_path, read_manifest

RELAX = ["--steps", "8", "--fmax", "0.2", "--threads", "1"]


@pytest.fixture(scope="module")
def cu_file(tmp_path_factory):
    """8 rattled Cu cells of 4 and 8 atoms."""
    import ase.io
    from ase.build import bulk

    frames = []
    for k in range(8):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (1 + k % 2, 1, 1)
        atoms.rattle(0.02, seed=k)
        frames.append(atoms)
    path = tmp_path_factory.mktemp("cu") / "cu.extxyz"
    ase.io.write(path, frames)
    return path


def _same_results(path_a, path_b, n, tol=1e-8):
    """Same structures in the same order: energies to ``tol`` eV, positions/forces to ``tol``."""
    import ase.io

    a, b = ase.io.read(path_a, ":"), ase.io.read(path_b, ":")
    assert len(a) == len(b) == n
    for x, y in zip(a, b, strict=True):
        assert len(x) == len(y)
        assert abs(x.get_potential_energy() - y.get_potential_energy()) < tol
        assert np.abs(x.positions - y.positions).max() < tol
        assert np.abs(x.get_forces() - y.get_forces()).max() < tol


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- shards
def test_parse_shard():
    s = parse_shard("3/4")
    assert (s.index, s.count, s.tag) == (3, 4, "shard-3-of-4")
    for bad in ("5/4", "4/4", "-1/4", "1/0", "a/b", "3"):
        with pytest.raises(EqtoolError, match="--shard"):
            parse_shard(bad)


def test_shard_from_slurm_array_env():
    assert shard_from_env({}) is None
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "5",
           "SLURM_ARRAY_TASK_STEP": "2"}
    s = shard_from_env(env)
    assert (s.index, s.count, s.origin) == (1, 4, "SLURM array")
    with pytest.raises(EqtoolError, match="SLURM"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "1"})


@pytest.mark.parametrize("count", [1, 3, 4, 7, 50])
def test_assignment_covers_everything_once_and_balances_atoms(count):
    n_atoms = np.random.default_rng(count).integers(1, 64, size=40)
    shards = assign_shards(n_atoms, count)
    flat = sorted(k for s in shards for k in s)
    assert flat == list(range(40))
    assert all(s == sorted(s) for s in shards)
    loads = [int(n_atoms[s].sum()) for s in shards]
    assert max(loads) - min(loads) <= n_atoms.max()  # greedy LPT bound
    assert shards == assign_shards(list(n_atoms), count)  # deterministic


def test_shard_path():
    path = shard_path("out/relaxed.extxyz", parse_shard("1/4"))
    assert path.as_posix() == "out/relaxed.shard-1-of-4.extxyz"


# ----------------------------------------------------------------------------- relax
def test_sharded_relax_merges_to_the_single_process_file(cu_file, tmp_path, capsys):
    for i in range(3):
        code, _, err = run(["relax", cu_file, "--model", CU_MODEL, "--out", tmp_path / "r.extxyz",
                            "--shard", f"{i}/3", *RELAX], capsys)
        assert code == 0, err
        assert f"shard {i}/3" in err
    code, _, err = run(["data", "merge", tmp_path / "merged.extxyz", tmp_path], capsys)
    assert code == 0, err
    code, _, err = run(["relax", cu_file, "--model", CU_MODEL, "--out", tmp_path / "single.extxyz", *RELAX],
                       capsys)
    assert code == 0, err
    _same_results(tmp_path / "merged.extxyz", tmp_path / "single.extxyz", 8)
    # a rerun of a finished shard does nothing
    before = (tmp_path / "r.shard-1-of-3.extxyz").read_bytes()
    code, _, err = run(["relax", cu_file, "--model", CU_MODEL, "--out", tmp_path / "r.extxyz",
                        "--shard", "1/3", *RELAX], capsys)
    assert code == 0 and "0 relaxed now" in err, err
    assert (tmp_path / "r.shard-1-of-3.extxyz").read_bytes() == before


def test_killed_shard_resumes_with_only_the_missing_structures(cu_file, tmp_path, capsys):
    out = tmp_path / "r.extxyz"
    argv = ["relax", cu_file, "--model", CU_MODEL, "--out", out, "--shard", "0/1", *RELAX]
    assert run(argv, capsys)[0] == 0
    full = shard_path(out, parse_shard("0/1"))
    complete_out, complete_man = full.read_bytes(), manifest_path(full).read_bytes()
    # a kill while structure 6 was being written: its result is half in the output, its manifest
    # line half written, structure 7 never started
    header, entries = read_manifest(manifest_path(full))
    cut = entries[5]["end"]
    man_lines = complete_man.split(b"\n")
    full.write_bytes(complete_out[:cut] + complete_out[cut:cut + 40])
    manifest_path(full).write_bytes(b"\n".join(man_lines[:7]) + b"\n" + man_lines[7][:15])
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert "6 done already" in err and "2 relaxed now" in err
    assert full.read_bytes() == complete_out
    assert [e["index"] for e in read_manifest(manifest_path(full))[1]] == list(range(8))


def test_bad_shard_is_one_line_and_writes_nothing(cu_file, tmp_path, capsys):
    code, out, err = run(["relax", cu_file, "--model", CU_MODEL, "--out", tmp_path / "r.extxyz",
                          "--shard", "5/4", *RELAX], capsys)
    assert_user_error(code, out, err, "--shard", "5/4")
    assert _files(tmp_path) == []
    code, out, err = run(["relax", cu_file, "--model", CU_MODEL, "--out", tmp_path / "r.cif",
                          "--shard", "0/4", *RELAX], capsys)
    assert_user_error(code, out, err, "extxyz")
    assert _files(tmp_path) == []


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """cu-emt with one weight nudged: another model file."""
    import torch

    from eqtool.models.files import load_model, save_model

    model = load_model(CU_MODEL)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    return save_model(model, tmp_path_factory.mktemp("model") / "other.pt")


def test_manifest_from_another_model_or_options_refuses(cu_file, other_model, tmp_path, capsys):
    base = ["relax", cu_file, "--out", tmp_path / "r.extxyz", "--shard", "0/2"]
    assert run([*base, "--model", CU_MODEL, *RELAX], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run([*base, "--model", other_model, *RELAX], capsys)
    assert_user_error(code, out, err, "manifest", "another model")
    code, out, err = run([*base, "--model", CU_MODEL, "--steps", "9", "--fmax", "0.2"], capsys)
    assert_user_error(code, out, err, "manifest", "other options")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# ----------------------------------------------------------------------------- merge
def test_merge_refuses_missing_and_duplicated_structures(cu_file, tmp_path, capsys):
    for i in (0, 2):
        assert run(["relax", cu_file, "--model", CU_MODEL, "--out", tmp_path / "r.extxyz",
                    "--shard", f"{i}/3", *RELAX], capsys)[0] == 0
    code, out, err = run(["data", "merge", tmp_path / "m.extxyz", tmp_path], capsys)
    assert_user_error(code, out, err, "missing", "1/3")
    assert not (tmp_path / "m.extxyz").exists()
    # shard 0 copied as if it were shard 1: its structures are now in two outputs
    src = tmp_path / "r.shard-0-of-3.extxyz"
    header, entries = read_manifest(manifest_path(src))
    fake = tmp_path / "r.shard-1-of-3.extxyz"
    fake.write_bytes(src.read_bytes())
    rows = [{**header, "shard": [1, 3], "output": fake.name}, *entries]
    manifest_path(fake).write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run(["data", "merge", tmp_path / "m.extxyz", tmp_path], capsys)
    assert_user_error(code, out, err, "in two shard outputs")
    assert not (tmp_path / "m.extxyz").exists()


def test_merge_refuses_shards_of_different_runs(cu_file, tmp_path, capsys):
    assert run(["relax", cu_file, "--model", CU_MODEL, "--out", tmp_path / "a.extxyz", "--shard", "0/2",
                *RELAX], capsys)[0] == 0
    assert run(["relax", cu_file, "--model", CU_MODEL, "--out", tmp_path / "b.extxyz", "--shard", "1/2",
                "--steps", "7", "--fmax", "0.2"], capsys)[0] in (0, 3)
    code, out, err = run(["data", "merge", tmp_path / "m.extxyz", tmp_path / "a.shard-0-of-2.extxyz",
                          tmp_path / "b.shard-1-of-2.extxyz"], capsys)
    assert_user_error(code, out, err, "another run")
    code, out, err = run(["data", "merge", tmp_path / "m.extxyz", tmp_path / "nothing.extxyz"], capsys)
    assert_user_error(code, out, err, "not found")
    assert not (tmp_path / "m.extxyz").exists()


# ----------------------------------------------------------------------------- predict, md
def test_sharded_predict_matches_single_process(cu_file, tmp_path, capsys):
    for i in range(2):
        code, _, err = run(["predict", cu_file, "--model", CU_MODEL, "--dtype", "float64", "--batch-size",
                            "3", "--out", tmp_path / "p.extxyz", "--shard", f"{i}/2"], capsys)
        assert code == 0, err
    assert run(["data", "merge", tmp_path / "m.extxyz", tmp_path / "p.shard-0-of-2.extxyz",
                tmp_path / "p.shard-1-of-2.extxyz.manifest.jsonl"], capsys)[0] == 0
    assert run(["predict", cu_file, "--model", CU_MODEL, "--dtype", "float64", "--out",
                tmp_path / "s.extxyz"], capsys)[0] == 0
    _same_results(tmp_path / "m.extxyz", tmp_path / "s.extxyz", 8, tol=1e-10)


def test_sharded_md_one_run_per_structure(cu_file, tmp_path, capsys):
    import ase.io

    argv = ["md", cu_file, "--model", CU_MODEL, "--steps", "4", "--interval", "2", "--out", tmp_path / "t.h5"]
    for i in range(2):
        code, _, err = run([*argv, "--shard", f"{i}/2"], capsys)
        assert code == 0, err
    assert run(["data", "merge", tmp_path / "final.extxyz", tmp_path], capsys)[0] == 0
    final = ase.io.read(tmp_path / "final.extxyz", ":")
    assert [a.info["md_trajectory"] for a in final] == [f"t.{k}.h5" for k in range(8)]
    assert all(a.info["md_steps"] == 4 for a in final)
    assert all((tmp_path / f"t.{k}.csv").is_file() for k in range(8))
    code, out, err = run([*argv, "--shard", "0/2", "--restart"], capsys)
    assert_user_error(code, out, err, "--restart", "--shard")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for k in range(8):
        (foreign / f"x.{k}.h5").write_bytes(b"not ours")
    code, out, err = run([*argv[:-1], foreign / "x.h5", "--shard", "0/2"], capsys)
    assert_user_error(code, out, err, "--overwrite")
    assert len(list(foreign.iterdir())) == 8
    code, out, err = run(["md", cu_file, cu_file, "--model", CU_MODEL, "--out", tmp_path / "x.h5"], capsys)
    assert_user_error(code, out, err, "--shard")


# ----------------------------------------------------------------------------- sbatch
def test_sbatch_dry_run_is_a_valid_script_and_writes_nothing(cu_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["sbatch", "--array", "4", "--time", "0:10:00", "--mem", "2G", "--dry-run", "--",
                          "relax", cu_file, "--model", CU_MODEL, "--out", "relaxed.extxyz"], capsys)
    assert code == 0, err
    assert "#SBATCH --array=0-3" in out and "#SBATCH --time=0:10:00" in out and "#SBATCH --mem=2G" in out
    assert "eqtool data merge relaxed.extxyz relaxed.shard-*-of-4.extxyz" in out
    check = subprocess.run(["bash", "-n"], input=out, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr
    assert _files(tmp_path) == []


def test_sbatch_bad_input_is_one_line_and_writes_nothing(cu_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    relax = ["relax", cu_file, "--model", CU_MODEL, "--out", "relaxed.extxyz"]
    code, out, err = run(["sbatch", "--array", "2", "--", *relax], capsys)
    assert_user_error(code, out, err, "sbatch", "PATH")
    code, out, err = run(["sbatch", "--array", "2", "--", *relax, "--shard", "0/2"], capsys)
    assert_user_error(code, out, err, "--shard")
    code, out, err = run(["sbatch", "--array", "2", "--", *relax, "--no-such-option"], capsys)
    assert_user_error(code, out, err, "no-such-option")
    code, out, err = run(["sbatch", "--array", "2", "--", "train", "recipe.yaml"], capsys)
    assert_user_error(code, out, err, "train-multinode")
    code, out, err = run(["sbatch", "--array", "0", "--dry-run", "--", *relax], capsys)
    assert_user_error(code, out, err, "--array")
    assert _files(tmp_path) == []


# ----------------------------------------------------------------------------- requeue
def test_resume_after_requeue_takes_the_newest_hpc_checkpoint(tmp_path):
    import os

    from eqtool.train import requeue_checkpoint

    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    assert requeue_checkpoint(tmp_path, last) == last
    for n, age in ((1, 50), (10, 10), (2, 30)):  # Lightning numbers them; 10 is the newest
        p = tmp_path / f"hpc_ckpt_{n}.ckpt"
        p.write_bytes(b"x")
        os.utime(p, (last.stat().st_mtime + 100 - age,) * 2)
    assert requeue_checkpoint(tmp_path, last) == tmp_path / "hpc_ckpt_10.ckpt"
    os.utime(last, (last.stat().st_mtime + 1000,) * 2)  # a later epoch end wins again
    assert requeue_checkpoint(tmp_path, last) == last


def test_more_shards_than_structures_leaves_empty_shards_that_merge(cu_file, tmp_path, capsys):
    for i in range(10):
        code, _, err = run(["predict", cu_file, "--model", CU_MODEL, "--dtype", "float64",
                            "--out", tmp_path / "p.extxyz", "--shard", f"{i}/10"], capsys)
        assert code == 0, err
    assert (tmp_path / "p.shard-9-of-10.extxyz").stat().st_size == 0  # 8 structures, 10 shards
    code, _, err = run(["data", "merge", tmp_path / "m.extxyz", tmp_path], capsys)
    assert code == 0, err
    assert "wrote 8 structures from 10 shard output(s)" in err
