"""Library entry points for training: :func:`train` (a recipe -> a run folder) and :func:`export`.

A run folder holds::

    config.yaml           the resolved recipe
    model_config.json     the model's config with the fitted E0s/statistics (for reading)
    checkpoints/          best.ckpt (lowest val/loss), last.ckpt (every epoch / every N steps)
    logs/version_*/       CSV logs, one version per session (tensorboard/ too when installed)
    fit_history.jsonl     one line per session start/end (epoch, global step)
    model.pt              the exported model (EMA weights of the best checkpoint)
    test_metrics.json     MAE/RMSE on the test split (meV/atom, meV/Å, meV/Å³)
    parity.png, learning_curve.png
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from eqtool.errors import EqtoolError

__all__ = ["train", "fit", "export", "prepare_model", "checkpoint_path", "model_from_checkpoint"]

CKPT_DIR = "checkpoints"
# model options fitted from data (set in the recipe's model section, not in model.kwargs)
FITTED = ("atomic_numbers", "e0s", "avg_num_neighbors", "scale", "shift")
# tasks with their own training loop: task -> "module:function(config, resume=, log=) -> run folder"
OTHER_TRAINERS = {
    "generative": "eqtool.tasks.generative:train_generative",
    "hamiltonian": "eqtool.tasks.hamiltonian:train_hamiltonian",
    "docking": "eqtool.tasks.docking:train_docking",
}


def _dtype(cfg) -> torch.dtype:
    return getattr(torch, cfg.trainer.dtype)


def _e0s_dict(e0s) -> dict[int, float]:
    from ase.data import atomic_numbers

    out = {}
    for key, value in e0s.items():
        if isinstance(key, int) or str(key).isdigit():
            out[int(key)] = float(value)
        elif key in atomic_numbers:
            out[int(atomic_numbers[key])] = float(value)
        else:
            raise EqtoolError(f"model.e0s: unknown element {key!r}", source="recipe")
    return out


def prepare_model(cfg, log=print):
    """Build the model of ``cfg.model`` with E0s and statistics fitted on the training split.

    Returns:
        ``(model, datamodule)``; ``model.config`` holds every fitted value, so
        ``build_model(**model.config)`` rebuilds it without data.
    """
    from eqtool.data.datamodule import PotentialDataModule
    from eqtool.models.potential import stats
    from eqtool.models.registry import build_model, model_kwargs

    dtype = _dtype(cfg)
    defaults = model_kwargs(cfg.model.name)
    for key in FITTED:
        if key in cfg.model.kwargs:
            raise EqtoolError(f"set model.{key} instead of model.kwargs.{key}", source="recipe")
    cutoff = float(cfg.model.kwargs.get("cutoff", defaults.get("cutoff", 5.0)))
    dm = PotentialDataModule(cfg.data, cutoff, dtype)
    dm.setup()
    log(f"data: {cfg.data.path}: train {len(dm.splits['train'])}, val {len(dm.splits['val'])}, "
        f"test {len(dm.splits['test'])} frames; cutoff {cutoff} Å")
    keep = ("atomic_numbers", "batch", "n_atoms", "energy", "forces", "edge_index")  # what stats read
    batches = [{k: b[k] for k in keep if k in b} for b in dm.stats_loader()]
    elements = sorted({int(z) for b in batches for z in b["atomic_numbers"].unique().tolist()})
    fitted: dict[str, Any] = {}
    if cfg.model.e0s == "fit":
        e0s = stats.fit_e0s(batches)
    else:
        e0s = _e0s_dict(cfg.model.e0s)
        missing = [z for z in elements if z not in e0s]
        if missing:
            raise EqtoolError(f"model.e0s has no value for atomic number(s) {missing}", source="recipe")
        elements = sorted(e0s)  # elements given E0s are supported even if absent from training
    fitted["e0s"] = {int(z): float(e) for z, e in e0s.items()}
    if cfg.model.avg_num_neighbors == "auto":
        fitted["avg_num_neighbors"] = float(stats.compute_avg_num_neighbors(batches))
    else:
        fitted["avg_num_neighbors"] = float(cfg.model.avg_num_neighbors)
    if "auto" in (cfg.model.scale, cfg.model.shift):
        scale, shift = stats.compute_scale_shift(batches, fitted["e0s"])
    fitted["scale"] = float(scale if cfg.model.scale == "auto" else cfg.model.scale)
    fitted["shift"] = float(shift if cfg.model.shift == "auto" else cfg.model.shift)
    log("fitted: " + ", ".join(f"{k}={v}" for k, v in fitted.items()))
    model = build_model(cfg.model.name, **{**cfg.model.kwargs, "atomic_numbers": elements, **fitted})
    return model.to(dtype), dm


def checkpoint_path(run_dir: str | os.PathLike, which: str = "best") -> Path:
    """``run_dir/checkpoints/{best,last}.ckpt``; ``best`` falls back to ``last``."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    for name in ([which, "last"] if which == "best" else [which]):
        p = ckpt_dir / f"{name}.ckpt"
        if p.is_file():
            return p
    raise EqtoolError(f"no {which} checkpoint in {ckpt_dir}", source=str(run_dir))


def model_from_checkpoint(ckpt: str | os.PathLike, ema: bool = True) -> torch.nn.Module:
    """Rebuild the model stored in a Lightning checkpoint written by :func:`train`.

    Uses the EMA weights when present (and ``ema``), else the raw weights.
    """
    from eqtool.models.registry import build_model

    try:
        data = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EqtoolError(f"cannot read checkpoint ({type(e).__name__}: {e})", source=str(ckpt)) from None
    config = (data.get("hyper_parameters") or {}).get("model_config")
    if not config:
        raise EqtoolError("checkpoint has no model_config: not written by eqtool train", source=str(ckpt))
    sd = data["state_dict"]
    prefix = "ema.module." if ema and any(k.startswith("ema.module.") for k in sd) else "model."
    weights = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    dtype = next((v.dtype for v in weights.values() if v.is_floating_point()), torch.float64)
    model = build_model(**config).to(dtype)  # cast first: loading into float32 would round
    model.load_state_dict(weights, strict=True)
    return model.eval()


def export(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, which: str = "best",
           extra: dict[str, Any] | None = None) -> Path:
    """Write the model of a run (``best`` or ``last`` checkpoint, EMA weights) as a model file.

    Args:
        run_dir: a folder made by :func:`train`.
        out: output path (default ``run_dir/model.pt``).
        which: ``"best"`` (falls back to ``last``) or ``"last"``.
        extra: metadata stored in the file (default: the run's test metrics if present).
    """
    from eqtool.models.files import save_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EqtoolError("run folder not found", source=str(run_dir))
    ckpt = checkpoint_path(run_dir, which)
    model = model_from_checkpoint(ckpt)
    if extra is None:
        extra = {"checkpoint": ckpt.name}
        metrics = run_dir / "test_metrics.json"
        if metrics.is_file():
            extra["test_metrics"] = json.loads(metrics.read_text(encoding="utf-8"))
    return save_model(model, out or run_dir / "model.pt", extra=extra)


def _loggers(run_dir: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger

    loggers = [CSVLogger(save_dir=str(run_dir), name="logs")]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return loggers
    from lightning.pytorch.loggers import TensorBoardLogger

    loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", default_hp_metric=False))
    return loggers


def _srun_single_node() -> None:
    """``srun -n N`` on one node: set ``SLURM_NTASKS_PER_NODE=N`` as ``--ntasks-per-node`` would.

    Lightning's SLURM environment refuses ``SLURM_NTASKS > 1`` without ``SLURM_NTASKS_PER_NODE``,
    which SLURM only sets for ``--ntasks-per-node``; on one node the two mean the same.
    """
    env = os.environ
    if (int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_NTASKS_PER_NODE" not in env
            and env.get("SLURM_NNODES") == "1"):
        env["SLURM_NTASKS_PER_NODE"] = env["SLURM_NTASKS"]


def _trainer(cfg, run_dir: Path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

    from eqtool.tasks.callbacks import FitHistory

    t = cfg.trainer
    _srun_single_node()
    # Lightning's hint on any machine with SLURM installed, even for a plain local run
    warnings.filterwarnings("ignore", message=r".*`srun` command is available on your system but is not used")
    ckpt_dir = run_dir / CKPT_DIR
    callbacks = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/loss", mode="min", save_top_k=1,
                        save_last=True, auto_insert_metric_name=False, enable_version_counter=False),
        FitHistory(run_dir / "fit_history.jsonl"),
    ]
    if t.checkpoint_every_steps:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=0, save_last=True,
                                         every_n_train_steps=t.checkpoint_every_steps,
                                         enable_version_counter=False))
    if t.progress_bar:
        callbacks.append(RichProgressBar())
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision="64-true" if t.dtype == "float64" else "32-true",
        max_epochs=t.max_epochs, max_time=t.max_time, gradient_clip_val=cfg.optim.grad_clip,
        log_every_n_steps=t.log_every, check_val_every_n_epoch=t.check_val_every,
        callbacks=callbacks, logger=_loggers(run_dir), default_root_dir=str(run_dir),
        enable_progress_bar=t.progress_bar, enable_model_summary=False, num_sanity_val_steps=0,
    )


def _finish(cfg, run_dir: Path, dm, log) -> dict[str, float]:
    """Export, test-split metrics, parity and learning-curve plots (rank 0 only)."""
    from eqtool.models.files import load_model
    from eqtool.tasks import report

    export(run_dir)
    model = load_model(run_dir / "model.pt")
    split = "test" if len(dm.splits.get("test", ())) else "val"
    loader = dm.loader(split, batch_size=cfg.data.val_batch_size)
    arrays = report.predict_arrays(model, loader)
    metrics = report.error_metrics(arrays)
    report.write_json(run_dir / "test_metrics.json", {
        "split": split, "n_systems": int(len(dm.splits[split])),
        "units": {"energy": "meV/atom", "forces": "meV/Å", "stress": "meV/Å³"}, **metrics})
    export(run_dir)  # again, now with the test metrics stored in the file
    report.parity_plot(arrays, run_dir / "parity.png", title=split)
    report.learning_curve(run_dir / "logs", run_dir / "learning_curve.png")
    log(f"wrote {run_dir / 'model.pt'}, test_metrics.json, parity.png, learning_curve.png")
    return metrics


def check_run_dir(run_dir: Path, resume: bool) -> Path:
    """Return ``run_dir/checkpoints/last.ckpt`` after checking it fits ``resume``.

    Raises:
        EqtoolError: ``resume`` without a last checkpoint, or checkpoints present without ``resume``.
    """
    last = run_dir / CKPT_DIR / "last.ckpt"
    if resume and not last.is_file():
        raise EqtoolError(f"nothing to resume: {last} does not exist", source=str(run_dir))
    if not resume and (run_dir / CKPT_DIR).is_dir() and any((run_dir / CKPT_DIR).iterdir()):
        raise EqtoolError("run folder already has checkpoints; pass --resume to continue it or choose "
                          "another --run-dir", source=str(run_dir))
    return last


def requeue_checkpoint(run_dir: Path, last: Path) -> Path:
    """The checkpoint ``--resume`` continues from: ``last``, or a newer ``hpc_ckpt_N.ckpt``.

    Under SLURM, Lightning saves ``RUN_DIR/hpc_ckpt_N.ckpt`` on SIGUSR1 (``#SBATCH --signal``)
    and requeues the job; that checkpoint is newer than ``checkpoints/last.ckpt``.
    """
    hpc = sorted(Path(run_dir).glob("hpc_ckpt_*.ckpt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if hpc and (not last.is_file() or hpc[-1].stat().st_mtime >= last.stat().st_mtime):
        return hpc[-1]
    return last


def model_from_last(last: Path, dtype: torch.dtype) -> torch.nn.Module:
    """Rebuild (untrained) the model a checkpoint was made with; Lightning then restores its weights."""
    from eqtool.models.registry import build_model

    saved = torch.load(last, map_location="cpu", weights_only=True)
    return build_model(**saved["hyper_parameters"]["model_config"]).to(dtype)


def init_from(config, model, log=print):
    """The model of ``config.model.init_from`` (a model file or shipped name) in ``model``'s dtype, for
    fine-tuning: same registry name as the recipe, and every key the recipe sets in ``model.kwargs``
    equal to the file's (others come from the file).

    Raises:
        EqtoolError: another model name, disagreeing kwargs, or an unreadable file (naming it).
    """
    from eqtool.models.files import model_from_payload, read_model_file

    payload = read_model_file(config.model.init_from)
    source = payload["path"]
    name = payload["config"].get("name")
    if name != config.model.name:
        raise EqtoolError(f"model.init_from is a {name!r} model; the recipe trains {config.model.name!r}",
                          source=source)
    new = model_from_payload(payload, dtype=next(model.parameters()).dtype, source=source)

    def plain(value):
        return json.loads(json.dumps(value, default=str))

    differ = sorted(k for k in config.model.kwargs
                    if plain(config.model.kwargs[k]) != plain(new.config.get(k, model.config.get(k))))
    if differ:
        raise EqtoolError(f"model.kwargs {', '.join(differ)} differ from the model in model.init_from; "
                          "make them equal or leave them out", source=source)
    log(f"model: weights, architecture and fitted statistics from {source} (model.init_from)")
    return new.train()


def fit(config, resume: bool, log, setup, task_cls, finish) -> Path:
    """The training skeleton every task shares; return the run folder.

    Checks the run folder, seeds, builds the Lightning trainer, gets ``(model, datamodule)`` from
    ``setup(last, log)`` (``last`` is the checkpoint to resume from, or ``None`` for a fresh run),
    writes ``config.yaml`` (``config.resume.yaml`` when resuming) and ``model_config.json`` on rank
    0, fits ``task_cls(model, loss, optim, max_epochs=, check_val_every=)`` and calls
    ``finish(config, run_dir, datamodule, log)`` on rank 0. ``--resume`` continues from the newest of
    ``checkpoints/last.ckpt`` and a SLURM requeue checkpoint (:func:`requeue_checkpoint`).
    """
    import lightning as L

    from eqtool.config.load import save_config
    from eqtool.tasks.report import write_json

    run_dir = Path(config.run_dir)
    last = check_run_dir(run_dir, resume)
    if resume:
        last = requeue_checkpoint(run_dir, last)
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    trainer = _trainer(config, run_dir)
    quiet = (lambda *a, **k: None) if not trainer.is_global_zero else log
    model, dm = setup(last if resume else None, quiet)
    if not resume and config.model.init_from:
        model = init_from(config, model, quiet)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / ("config.yaml" if not resume else "config.resume.yaml"))
        if not resume:  # for reading only; resuming rebuilds the model from the checkpoint
            write_json(run_dir / "model_config.json", model.config)
    task = task_cls(model, config.loss, config.optim, max_epochs=config.trainer.max_epochs,
                    check_val_every=config.trainer.check_val_every)
    with warnings.catch_warnings():  # the EMA copy is in eval mode on purpose
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        trainer.fit(task, datamodule=dm, ckpt_path=str(last) if resume else None)
    if trainer.is_global_zero:
        finish(config, run_dir, dm, quiet)
    return run_dir


def train(config, resume: bool = False, log=print) -> Path:
    """Train the recipe ``config`` (a :class:`~eqtool.config.schema.RunConfig`); return the run folder.

    Before training, E0s and statistics are fitted on the training split (or, with ``resume``,
    read back from ``model_config.json``). ``resume`` continues exactly from
    ``checkpoints/last.ckpt`` (weights, EMA, optimiser, scheduler, epoch and step counters).

    Raises:
        EqtoolError: checkpoints already present without ``resume``, nothing to resume, bad data.
    """
    if config.task in OTHER_TRAINERS:
        import importlib

        module, func = OTHER_TRAINERS[config.task].split(":")
        return getattr(importlib.import_module(module), func)(config, resume=resume, log=log)

    from eqtool.data.datamodule import PotentialDataModule
    from eqtool.tasks import TASKS

    def setup(last, log):
        if last is None:
            return prepare_model(config, log=log)
        model = model_from_last(last, _dtype(config))
        return model, PotentialDataModule(config.data, model.cutoff, _dtype(config))

    return fit(config, resume, log, setup, TASKS[config.task], _finish)
