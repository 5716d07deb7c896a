"""Typed recipes: YAML loading, --set overrides, unknown/missing keys, bad values, round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from eqtool.config import load_config, save_config
from eqtool.config.load import config_from_dict, parse_override
from eqtool.config.schema import OptimConfig
from eqtool.errors import EqtoolError

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes" / "potential").glob("*.yaml"))

MINIMAL = """
data:
  path: data/cu_emt.h5
model:
  name: mace
"""


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(EqtoolError) as exc:
        fn(*args, **kwargs)
    line = exc.value.oneline()
    assert "\n" not in line
    return line


def test_minimal_recipe_gets_documented_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL, "my-run.yaml"))
    assert cfg.task == "potential"
    assert cfg.data.path == "data/cu_emt.h5" and cfg.data.batch_size == 8
    assert cfg.model.name == "mace" and cfg.model.kwargs == {} and cfg.model.e0s == "fit"
    assert cfg.optim == OptimConfig()
    assert cfg.trainer.dtype == "float64" and cfg.trainer.max_epochs == 100
    assert cfg.run_dir == str(Path("runs") / "my-run")  # default from the recipe name
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 1.0  # type: ignore[misc]


def test_set_overrides_parse_yaml_scalars(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), [
        "optim.lr=3e-4", "trainer.devices=2", "trainer.max_time=null", "optim.ema_decay=null",
        "model.kwargs.hidden_irreps=16x0e+16x1o", "model.kwargs.radial_mlp=[16, 16]", "data.split=s.json",
        "trainer.progress_bar=false", "model.e0s.Cu=-3.5",
    ])
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.trainer.devices == 2 and cfg.trainer.max_time is None and cfg.optim.ema_decay is None
    assert cfg.model.kwargs == {"hidden_irreps": "16x0e+16x1o", "radial_mlp": [16, 16]}
    assert cfg.data.split == "s.json" and cfg.trainer.progress_bar is False
    assert cfg.model.e0s == {"Cu": -3.5}


def test_yaml_scientific_notation_without_dot_is_a_float(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + "optim:\n  lr: 1e-3\n  weight_decay: 5e-7\n"))
    assert cfg.optim.lr == 1e-3 and cfg.optim.weight_decay == 5e-7


def test_run_dir_option_wins(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + "run_dir: a/b\n"), run_dir="c/d")
    assert cfg.run_dir == "c/d"
    assert load_config(write(tmp_path, MINIMAL + "run_dir: a/b\n")).run_dir == "a/b"


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    path = write(tmp_path, MINIMAL.replace("  name: mace", "  name: mace\n  cutof: 5.0") +
                 "optim:\n  lr: 0.01\n")
    line = error_of(load_config, path)
    assert str(path) in line and "model.cutof" in line and "model.kwargs" not in line
    line = error_of(load_config, write(tmp_path, MINIMAL + "trainer:\n  max_epoch: 3\n"))
    assert "trainer.max_epoch" in line and "did you mean 'trainer.max_epochs'" in line
    line = error_of(load_config, write(tmp_path, MINIMAL + "optimizer:\n  lr: 3\n"))
    assert "'optimizer'" in line and "did you mean 'optim'" in line


def test_unknown_key_from_set_names_the_option(tmp_path):
    line = error_of(load_config, write(tmp_path, MINIMAL), ["optim.lrr=0.1"])
    assert line.startswith("--set") and "optim.lrr" in line and "'optim.lr'" in line


def test_missing_required_keys(tmp_path):
    line = error_of(load_config, write(tmp_path, "data:\n  path: x.h5\n"))
    assert "missing required key 'model'" in line and "recipe.yaml" in line
    line = error_of(load_config, write(tmp_path, "data:\n  batch_size: 2\nmodel:\n  name: mace\n"))
    assert "missing required key 'data.path'" in line


@pytest.mark.parametrize("extra, needle", [
    ("data:\n  path: x\n  batch_size: four\n", "data.batch_size: expected int, got 'four'"),
    ("data:\n  path: x\n  batch_size: 0\n", "data.batch_size: must be >= 1"),
    ("trainer:\n  max_epochs: 2.5\n", "trainer.max_epochs: expected int"),
    ("trainer:\n  dtype: float16\n", "trainer.dtype: expected 'float32' or 'float64'"),
    ("trainer:\n  progress_bar: maybe\n", "trainer.progress_bar: expected bool"),
    ("trainer:\n  max_time: 2h\n", "trainer.max_time"),
    ("loss:\n  kind: l1\n", "loss.kind: expected 'mse' or 'huber'"),
    ("loss:\n  forces: -1\n", "loss.forces: loss weights must be >= 0"),
    ("optim:\n  scheduler: step\n", "optim.scheduler"),
    ("optim:\n  lr: fast\n", "optim.lr: expected float"),
    ("optim:\n  ema_decay: 1.5\n", "optim.ema_decay"),
    ("task: quantum\n", "unknown task 'quantum'"),
    ("data: [1, 2]\n", "data: expected a mapping"),
])
def test_bad_values(tmp_path, extra, needle):
    text = MINIMAL
    if extra.startswith("data:"):
        text = "model:\n  name: mace\n"
    line = error_of(load_config, write(tmp_path, text + extra))
    assert needle in line, line


def test_bad_model_section_values(tmp_path):
    base = "data:\n  path: x\nmodel:\n  name: mace\n"
    assert "model.e0s" in error_of(load_config, write(tmp_path, base + "  e0s: guess\n"))
    assert "model.scale" in error_of(load_config, write(tmp_path, base + "  scale: big\n"))
    line = error_of(load_config, write(tmp_path, base + "  kwargs: 3\n"))
    assert "model.kwargs: expected a mapping" in line


def test_bad_files(tmp_path):
    assert "recipe file not found" in error_of(load_config, tmp_path / "nope.yaml")
    line = error_of(load_config, write(tmp_path, "data: [1,\n"))
    assert "not valid YAML" in line and "line" in line
    assert "must be a YAML mapping" in error_of(load_config, write(tmp_path, "- 1\n- 2\n"))


def test_bad_override_syntax():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    for text in ("novalue", "=3", "a..b=1"):
        assert "KEY.SUB=VALUE" in error_of(parse_override, text)


def test_save_and_reload_gives_equal_config(tmp_path):
    cfg = config_from_dict({"data": {"path": "x.h5", "max_train": 50},
                            "model": {"name": "mace", "kwargs": {"cutoff": 4.5}, "e0s": {29: -3.0}},
                            "loss": {"kind": "huber", "delta": 0.02}, "run_dir": str(tmp_path / "r")})
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_load(recipe):
    cfg = load_config(recipe)
    assert cfg.task == "potential" and cfg.model.name


def test_shipped_recipes_exist():
    assert {p.name for p in RECIPES} >= {"cu-quick.yaml", "cu-full.yaml"}
