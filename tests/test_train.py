"""Training end to end on tiny data: outputs, model files, export, predict, check, resume, DDP.

The in-process CLI tests use a Typer app holding this helper's commands (train, export, predict,
check) with the same error handling as ``eqtool.cli.main.main``; resume and DDP run as
subprocesses (Lightning re-launches the script for the second DDP rank).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from eqtool.cli import check as check_cmd
from eqtool.cli import export as export_cmd
from eqtool.cli import predict as predict_cmd
from eqtool.cli import train as train_cmd
from eqtool.data.batch import collate
from eqtool.errors import EqtoolError
from eqtool.io import read_structures
from eqtool.models.files import FORMAT_VERSION, MIGRATIONS, load_model, read_model_file, save_model
from eqtool.physics import compute_outputs
from eqtool.train import checkpoint_path, model_from_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "data" / "examples" / "cu_small.extxyz"

TINY = """
task: potential
data:
  path: {data}
  val_fraction: 0.2
  test_fraction: 0.2
  batch_size: 4
model:
  name: mace
  kwargs: {{cutoff: 4.0, hidden_irreps: "8x0e+8x1o", max_ell: 1, correlation: 2, num_interactions: 1,
           radial_mlp: [8], num_bessel: 4}}
loss: {{energy: 1.0, forces: 10.0, stress: 10.0}}
optim: {{lr: 0.005, ema_decay: 0.9, warmup_epochs: 1}}
trainer: {{max_epochs: 2, accelerator: cpu, devices: 1, log_every: 1, progress_bar: false, dtype: float64}}
"""

SCRIPT = """
import sys
from eqtool.config import load_config
from eqtool.train import train
overrides = [a for a in sys.argv[3:] if a != "--resume"]
train(load_config(sys.argv[1], overrides, run_dir=sys.argv[2]), resume="--resume" in sys.argv)
"""


def app() -> typer.Typer:
    a = typer.Typer()
    a.command("train")(train_cmd.train)
    a.command("export")(export_cmd.export)
    a.command("predict")(predict_cmd.predict)
    a.command("check")(check_cmd.check)
    return a


def run_cli(*argv) -> tuple[int, str]:
    """Run a command in-process; EqtoolError -> (2, one line) as the real entry point does."""
    result = CliRunner().invoke(app(), [str(a) for a in argv])
    if isinstance(result.exception, EqtoolError):
        return 2, result.exception.oneline()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def tiny_recipe(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY.format(data=SMALL), encoding="utf-8")
    return path


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "fit_history.jsonl").read_text().splitlines()]


def energies(model, graphs) -> torch.Tensor:
    dtype = next(model.parameters()).dtype
    batch = collate(graphs, dtype=dtype, cutoff=model.cutoff)
    return compute_outputs(model, batch, forces=True)["energy"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One 2-epoch training through `eqtool train`, shared by the tests below."""
    folder = tmp_path_factory.mktemp("train")
    out = folder / "run"
    code, text = run_cli("train", tiny_recipe(folder), "--run-dir", out)
    assert code == 0, text
    assert "energy" in text and "meV/atom" in text  # the test-metrics table
    return out


# ----------------------------------------------------------------------------- outputs
def test_run_folder_has_every_output(run):
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "config.yaml", "model_config.json",
                 "test_metrics.json", "parity.png", "learning_curve.png", "model.pt",
                 "logs/version_0/metrics.csv"):
        assert (run / name).is_file(), name
    for png in ("parity.png", "learning_curve.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_systems"] == 2
    for key in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse"):
        assert np.isfinite(metrics[key]) and metrics[key] > 0
    assert metrics["energy_rmse"] >= metrics["energy_mae"]
    hist = history(run)
    assert [h["event"] for h in hist] == ["start", "end"]
    assert hist[-1]["epoch"] == 2 and hist[-1]["global_step"] == 2 * 2  # 8 train frames / batch 4
    cfg = json.loads((run / "model_config.json").read_text())
    assert cfg["atomic_numbers"] == [29] and cfg["avg_num_neighbors"] > 1
    logged = (run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    for col in ("train/loss_epoch", "val/loss", "val/energy_mae", "val/forces_mae", "train/forces_rmse"):
        assert col in logged, col


def test_test_metrics_match_an_independent_evaluation(run):
    from eqtool.config import load_config
    from eqtool.data.datamodule import PotentialDataModule

    cfg = load_config(run / "config.yaml")
    dm = PotentialDataModule(cfg.data, 4.0)
    dm.setup()
    graphs = read_structures(str(SMALL))
    test = [graphs[i] for i in dm.splits["test"]]
    model = load_model(run / "model.pt")
    pred = energies(model, test).numpy()
    ref = np.array([float(g.labels["energy"]) for g in test])
    n = np.array([g.n_atoms for g in test])
    mae = 1000 * np.abs((pred - ref) / n).mean()
    assert json.loads((run / "test_metrics.json").read_text())["energy_mae"] == pytest.approx(mae, rel=1e-6)


# ----------------------------------------------------------------------------- model files
def test_model_file_round_trip_gives_identical_energies(run, tmp_path):
    graphs = read_structures(str(SMALL))[:3]
    exported = load_model(run / "model.pt")
    from_ckpt = model_from_checkpoint(checkpoint_path(run, "best"))
    e1, e2 = energies(exported, graphs), energies(from_ckpt, graphs)
    assert torch.equal(e1, e2)
    save_model(exported, tmp_path / "again.pt", extra={"note": "x"})
    again = load_model(tmp_path / "again.pt")
    assert torch.equal(energies(again, graphs), e1)
    payload = read_model_file(tmp_path / "again.pt")
    assert payload["format"] == "eqtool-model" and payload["format_version"] == FORMAT_VERSION
    assert payload["extra"] == {"note": "x"} and payload["config"] == exported.config
    assert load_model(tmp_path / "again.pt", dtype="float32").e0.dtype == torch.float32


def test_exported_weights_are_the_ema_weights(run):
    data = torch.load(checkpoint_path(run, "best"), weights_only=True)
    sd = data["state_dict"]
    model = load_model(run / "model.pt")
    ema_keys = [k for k in sd if k.startswith("ema.module.")]
    assert ema_keys
    differs = False
    for key in ema_keys:
        name = key[len("ema.module."):]
        assert torch.equal(model.state_dict()[name], sd[key])
        differs |= not torch.equal(sd[key], sd["model." + name])
    assert differs  # EMA weights are not the raw weights


def test_export_command(run, tmp_path):
    code, text = run_cli("export", run, "--out", tmp_path / "m.pt", "--last")
    assert code == 0, text
    last = model_from_checkpoint(checkpoint_path(run, "last"))
    graphs = read_structures(str(SMALL))[:2]
    assert torch.equal(energies(load_model(tmp_path / "m.pt"), graphs), energies(last, graphs))
    code, line = run_cli("export", tmp_path / "missing-run")
    assert code == 2 and "run folder not found" in line


def test_model_file_errors(tmp_path, monkeypatch):
    with pytest.raises(EqtoolError, match="model file not found"):
        load_model(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(EqtoolError, match="not an eqtool model file"):
        load_model(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(EqtoolError, match="not an eqtool model file"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(EqtoolError, match="shipped models:"):
        load_model("no-such-model")
    torch.save({"format": "eqtool-model", "format_version": FORMAT_VERSION + 1, "config": {},
                "state_dict": {}}, tmp_path / "future.pt")
    with pytest.raises(EqtoolError, match="newer than this eqtool"):
        load_model(tmp_path / "future.pt")


def test_old_format_versions_migrate(run, tmp_path, monkeypatch):
    payload = torch.load(run / "model.pt", weights_only=True)
    payload["format_version"] = 0
    payload["settings"] = payload.pop("config")  # pretend version 0 called it "settings"
    torch.save(payload, tmp_path / "v0.pt")
    with pytest.raises(EqtoolError, match="no migration"):
        load_model(tmp_path / "v0.pt")

    def v0_to_v1(p):
        p = dict(p)
        p["config"] = p.pop("settings")
        p["format_version"] = 1
        return p

    monkeypatch.setitem(MIGRATIONS, 0, v0_to_v1)
    graphs = read_structures(str(SMALL))[:2]
    assert torch.equal(energies(load_model(tmp_path / "v0.pt"), graphs),
                       energies(load_model(run / "model.pt"), graphs))


# ----------------------------------------------------------------------------- predict / check
def test_predict_writes_readable_extxyz_with_forces(run, tmp_path):
    out = tmp_path / "pred.extxyz"
    code, text = run_cli("predict", SMALL, "--model", run / "model.pt", "--out", out, "--batch-size", 5)
    assert code == 0, text
    inputs, got = read_structures(str(SMALL)), read_structures(str(out))
    assert len(got) == len(inputs) == 12
    model = load_model(run / "model.pt")
    batch = collate(inputs, dtype=torch.float64, cutoff=model.cutoff)
    ref = compute_outputs(model, batch, forces=True, stress=True)
    np.testing.assert_allclose([float(g.labels["energy"]) for g in got], ref["energy"].numpy(), rtol=1e-10)
    np.testing.assert_allclose(np.concatenate([g.labels["forces"] for g in got]), ref["forces"].numpy(),
                               rtol=1e-8, atol=1e-10)
    for k, g in enumerate(got):  # stress only where fully periodic
        assert ("stress" in g.labels) == bool(inputs[k].pbc.all())
        np.testing.assert_allclose(g.positions, inputs[k].positions)
    assert "errors against the input labels" in text


def test_predict_bad_model_is_a_user_error(tmp_path):
    code, line = run_cli("predict", SMALL, "--model", "no-such-model", "--out", tmp_path / "o.extxyz")
    assert code == 2 and "no-such-model" in line and "shipped models" in line
    assert not (tmp_path / "o.extxyz").exists()


def test_check_passes_on_the_trained_model(run):
    code, text = run_cli("check", "--model", run / "model.pt")
    assert code == 0, text
    assert "pass" in text and "FAIL" not in text


# ----------------------------------------------------------------------------- config errors
def test_train_config_errors_are_one_line(tmp_path):
    recipe = tiny_recipe(tmp_path)
    code, line = run_cli("train", recipe, "--set", "optim.lrr=0.1")
    assert code == 2 and "optim.lrr" in line and "did you mean 'optim.lr'" in line
    code, line = run_cli("train", recipe, "--set", "data.batch_size=four")
    assert code == 2 and "data.batch_size: expected int" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  path: x.h5\n", encoding="utf-8")
    code, line = run_cli("train", bad)
    assert code == 2 and "missing required key 'model'" in line and "bad.yaml" in line
    code, line = run_cli("train", recipe, "--run-dir", tmp_path / "r", "--set", "model.kwargs.hiden=3")
    assert code == 2 and "hiden" in line
    code, line = run_cli("train", recipe, "--run-dir", tmp_path / "r2", "--resume")
    assert code == 2 and "nothing to resume" in line


def test_train_refuses_to_overwrite_a_run(run):
    code, line = run_cli("train", run / "config.yaml")
    assert code == 2 and "--resume" in line


# ----------------------------------------------------------------------------- resume / DDP
def _env() -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


@pytest.mark.slow
def test_resume_after_kill_continues_from_the_checkpoint(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    recipe, out = tiny_recipe(tmp_path), tmp_path / "run"
    args = [sys.executable, str(script), str(recipe), str(out), "trainer.max_epochs=8"]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    alive = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert alive, proc.stderr.read().decode()[-2000:]
    killed_at = torch.load(last, weights_only=True)
    step = killed_at["global_step"]
    assert step > 0 and killed_at["epoch"] < 7
    assert "test_metrics.json" not in os.listdir(out)

    done = subprocess.run([*args, "--resume"], env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    hist = history(out)
    starts = [h for h in hist if h["event"] == "start"]
    assert len(starts) == 2 and starts[1]["global_step"] == step  # not from zero
    assert hist[-1]["event"] == "end" and hist[-1]["epoch"] == 8 and hist[-1]["global_step"] == 8 * 2
    final = torch.load(last, weights_only=True)
    assert final["epoch"] == 7 and final["global_step"] == 16
    assert (out / "test_metrics.json").is_file() and (out / "model.pt").is_file()


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    recipe, out = tiny_recipe(tmp_path), tmp_path / "run"
    args = [sys.executable, str(script), str(recipe), str(out), "trainer.strategy=ddp", "trainer.devices=2"]
    done = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.rglob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    assert [p.parent for p in out.rglob("*.ckpt")] == [out / "checkpoints"] * 2
    hist = history(out)
    assert [h["event"] for h in hist] == ["start", "end"]  # rank 0 only
    # 8 training frames over 2 ranks, batch 4 -> 1 step per epoch per rank
    assert hist[-1]["epoch"] == 2 and hist[-1]["global_step"] == 2
    assert json.loads((out / "test_metrics.json").read_text())["n_systems"] == 2
    assert (out / "model.pt").is_file()
