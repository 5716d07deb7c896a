"""Training of Hamiltonian models (``task: hamiltonian``): data, Lightning task, run setup, export.

* :class:`HamiltonianDataModule` -- molecules with pair-level ``hamiltonian`` labels (Hartree, PySCF
  AO order) from an eqtool HDF5 file whose ``basis`` attribute must match the model's.
* :class:`HamiltonianTask` -- QHNet's loss ``w_mae MAE(H) + w_mse MSE(H)`` over the real AO matrix
  elements (padding excluded), AdamW + the schedules and EMA of
  :class:`~eqtool.tasks.potential.PotentialTask`, H MAE (µHa; all, on-site, off-site blocks)
  logged as ``{train,val,test}/h_mae…``; optionally (``loss.orth``, ``loss.occ``) the error in the
  Löwdin-orthogonalised basis and of the occupied orbital energies (:func:`orbital_errors`, logged as
  ``…/h_mae_orth``, ``…/h_mae_occ``); drives SPHNet's
  :class:`~eqtool.nn.sparse_gate.SparsityScheduler`.
* :func:`fit_reference` fits the per-element mean on-site blocks and the output scale the model
  stores; :func:`finish_hamiltonian` exports ``model.pt`` (EMA weights of the last checkpoint, TP
  gates frozen) and writes ``test_metrics.json`` (QH9 metrics per molecule, :mod:`eqtool.dft.metrics`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from eqtool.data import keys as K
from eqtool.data.batch import collate
from eqtool.errors import EqtoolError
from eqtool.nn.sparse_gate import SparsityScheduler
from eqtool.tasks.base import ModelTask

__all__ = ["HamiltonianDataModule", "HamiltonianTask", "hamiltonian_loss", "orbital_errors", "ao_mask",
           "fit_reference", "prepare_hamiltonian", "finish_hamiltonian", "train_hamiltonian",
           "evaluate_hamiltonian"]

UHA = 1e6  # Hartree -> µHa


# --------------------------------------------------------------------------- data
class _Graphs(Dataset):
    """Graphs of one split with a check that each has a ``hamiltonian`` label (picklable)."""

    def __init__(self, graphs):
        self.graphs = graphs

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int):
        g = self.graphs[i]
        if K.HAMILTONIAN not in g.labels:
            src, _, frame = (g.source or "dataset@?").rpartition("@")
            raise EqtoolError("frame has no 'hamiltonian' label", src, f"frame {frame}")
        return g


class _Collate:
    def __init__(self, dtype: torch.dtype, keys: Sequence[str]):
        self.dtype, self.keys = dtype, tuple(keys)

    def __call__(self, graphs):
        return collate(graphs, dtype=self.dtype, label_keys=[k for k in self.keys if k in graphs[0].labels])


class HamiltonianDataModule(L.LightningDataModule):
    """Train/val/test loaders of Hamiltonian-labelled molecules (splits as
    :func:`eqtool.data.datamodule.resolve_splits`).

    Args:
        cfg: a :class:`~eqtool.config.schema.DataConfig`.
        basis: the model's basis; an ``.h5`` whose ``basis`` attribute differs raises :class:`EqtoolError`.
        dtype: float dtype of the batches.
        keys: the labels the batches carry (``overlap``, ``n_occ`` too for ``loss.orth``/``loss.occ``).
        baseline: the model's Δ-learning baseline (:mod:`eqtool.dft.baseline`) or ``None``; computed
            once per molecule in :meth:`setup` (PySCF) and batched as ``hamiltonian_baseline``.
        log: where :meth:`setup` reports the baseline's cost.
    """

    def __init__(self, cfg, basis: str, dtype: torch.dtype = torch.float64,
                 keys: Sequence[str] = (K.HAMILTONIAN,), baseline: str | None = None, log=print):
        super().__init__()
        self.cfg, self.basis, self.dtype, self.keys = cfg, basis, dtype, tuple(keys)
        self.baseline, self.log = baseline, log
        if baseline is not None:
            self.keys += (K.HAMILTONIAN_BASELINE,)
        self.datasets: dict[str, _Graphs] = {}
        self.splits: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        from eqtool.data.datamodule import open_splits

        self.splits, parts = open_splits(self.cfg, check=self._check_basis)
        if self.baseline is not None:
            parts = self._with_baseline(parts)
        self.datasets = {name: _Graphs(graphs) for name, graphs in parts.items()}

    def _with_baseline(self, parts: dict) -> dict:
        import time

        from eqtool.dft.baseline import with_baseline

        t0, n = time.perf_counter(), sum(len(g) for g in parts.values())
        out = {name: with_baseline([g[k] for k in range(len(g))], self.baseline, self.basis)
               for name, g in parts.items()}
        self.log(f"baseline '{self.baseline}' for {n} molecules in {time.perf_counter() - t0:.1f} s")
        return out

    def _check_basis(self, full) -> None:
        file_basis = getattr(full, "attrs", {}).get("basis")
        if file_basis is None:
            raise EqtoolError("dataset has no 'basis' attribute; a Hamiltonian dataset must record its AO "
                              "basis (see data/make_hamiltonian.py)", source=str(self.cfg.path))
        if str(file_basis).lower() != self.basis.lower():
            raise EqtoolError(f"dataset basis {file_basis!r} differs from the model's {self.basis!r}",
                              source=str(self.cfg.path))

    def loader(self, name: str, shuffle: bool = False, batch_size: int | None = None,
               keys: Sequence[str] | None = None) -> DataLoader:
        self.setup()
        workers = self.cfg.num_workers
        return DataLoader(self.datasets[name], batch_size=batch_size or self.cfg.batch_size, shuffle=shuffle,
                          collate_fn=_Collate(self.dtype, keys or self.keys), num_workers=workers,
                          persistent_workers=workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", batch_size=self.cfg.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", batch_size=self.cfg.val_batch_size)


# --------------------------------------------------------------------------- loss
def ao_mask(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask [Q, 14, 14] bool, on_site [Q] bool)``: real AO entries of every pair block, and
    which pairs are on-site ``(i, i)``."""
    from eqtool.models.hamiltonian.qhnet import all_pairs

    elem = model.elements(batch[K.ATOMIC_NUMBERS])
    n_ao = model.n_ao()[elem]  # [N]
    i, j, _ = all_pairs(batch[K.N_ATOMS])
    ar = torch.arange(model.ao_index.shape[1], device=n_ao.device)
    mask = (ar[None, :, None] < n_ao[i][:, None, None]) & (ar[None, None, :] < n_ao[j][:, None, None])
    return mask, i == j


def hamiltonian_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, cfg):
    """``(loss, mae)``: ``cfg.mae * MAE + cfg.mse * MSE`` over the masked entries (Hartree)."""
    diff = (pred - target)[mask]
    mae = diff.abs().mean()
    return cfg.mae * mae + cfg.mse * (diff * diff).mean(), mae


def orbital_errors(pred: torch.Tensor, target: torch.Tensor, overlap: torch.Tensor,
                   atomic_numbers: torch.Tensor, n_atoms: torch.Tensor, n_occ: torch.Tensor | None = None,
                   eig_clamp: float = 1e-8) -> dict[str, torch.Tensor]:
    """The H error as orbitals see it, averaged over the molecules of a batch (Hartree):

    * ``"orth"``: mean ``|X (H_pred - H_ref) X|`` with ``X = S^-1/2`` (Löwdin orthogonalisation,
      eigenvalues clamped as :mod:`eqtool.dft.eigen` does);
    * ``"occ"`` (with ``n_occ``): MAE of the occupied orbital energies, the lowest ``n_occ``
      eigenvalues of ``X H X`` (differentiable: eigenvalue gradients need no eigenvector gaps).

    Args:
        pred, target: ``[Q, 14, 14]`` pair blocks of a batch (all pairs per molecule, row-major);
            ``pred`` differentiable.
        overlap: ``[Q, 14, 14]`` overlap pair blocks (no gradient).
        atomic_numbers: ``[N]``; n_atoms: ``[B]``; n_occ: ``[B]`` doubly occupied orbitals.
    """
    from eqtool.dft.basis import matrix_from_blocks

    orth, occ, pair0, atom0 = [], [], 0, 0
    for b, n in enumerate(n_atoms.tolist()):
        zs = atomic_numbers[atom0: atom0 + n].cpu().numpy()
        blocks = slice(pair0, pair0 + n * n)
        S = matrix_from_blocks(overlap[blocks].detach(), zs).double()
        w, U = torch.linalg.eigh(S)
        X = ((U * w.clamp(min=eig_clamp).rsqrt()) @ U.T).to(pred.dtype)
        Hp, Hr = (X @ matrix_from_blocks(h[blocks], zs) @ X for h in (pred, target))
        orth.append((Hp - Hr).abs().mean())
        if n_occ is not None:
            k = int(n_occ[b])
            occ.append((torch.linalg.eigvalsh(Hp)[:k] - torch.linalg.eigvalsh(Hr.detach())[:k]).abs().mean())
        pair0, atom0 = pair0 + n * n, atom0 + n
    out = {"orth": torch.stack(orth).mean()}
    if occ:
        out["occ"] = torch.stack(occ).mean()
    return out


class HamiltonianTask(ModelTask):
    """A Hamiltonian model with its loss, H MAE metrics, optimiser, schedules, EMA and sparsity schedule.

    Logs ``{split}/loss`` and ``{split}/h_mae``, ``…/h_mae_diag``, ``…/h_mae_offdiag`` (µHa, entry
    averages over the epoch).

    Args:
        model: e.g. :class:`~eqtool.models.hamiltonian.QHNet`.
        loss: :class:`~eqtool.models.hamiltonian.config.HamiltonianLossConfig`.
        optim: :class:`~eqtool.config.schema.OptimConfig`.
        max_epochs, check_val_every: as :class:`~eqtool.tasks.base.ModelTask`.
    """

    def __init__(self, model: torch.nn.Module, loss, optim, max_epochs: int = 100, check_val_every: int = 1):
        if getattr(model, "kind", None) != "hamiltonian":
            raise EqtoolError(f"model {getattr(model, 'config', {}).get('name')!r} does not predict a "
                              "Hamiltonian; task 'hamiltonian' needs model.name: qhnet", source="recipe")
        super().__init__(model, loss, optim, max_epochs, check_val_every)
        cfg = model.config
        self.sparsity_scheduler = SparsityScheduler(cfg.get("tp_random_steps", 0),
                                                    cfg.get("tp_adaptive_steps", 0))
        self._sums: dict[str, torch.Tensor] = {}

    def _step(self, split: str, batch, batch_idx: int = 0) -> torch.Tensor:
        training = split == "train"
        model = self.model if training else self.eval_model
        pred = model(batch)[K.HAMILTONIAN]
        target = batch[K.HAMILTONIAN].to(pred.dtype)
        mask, on_site = ao_mask(model, batch)
        loss, mae = hamiltonian_loss(pred, target, mask, self.loss_cfg)
        cfg = self.loss_cfg
        if cfg.orth > 0 or cfg.occ > 0:
            missing = [k for k in _label_keys(cfg) if k not in batch]
            if missing:
                raise EqtoolError(f"loss.orth/loss.occ need {', '.join(map(repr, missing))} labels in "
                                  "the dataset", source="recipe")
            errs = orbital_errors(pred, target, batch[K.OVERLAP], batch[K.ATOMIC_NUMBERS], batch[K.N_ATOMS],
                                  batch["n_occ"] if cfg.occ > 0 else None)
            n_mol = int(batch[K.N_ATOMS].shape[0])
            for name, err in errs.items():
                loss = loss + getattr(cfg, name) * err
                self._add(f"{split}_{name}", err.detach() * n_mol, n_mol)
        self._log_loss(split, loss, int(batch[K.N_ATOMS].shape[0]))
        err = ((pred - target).abs() * mask).detach()
        for name, sel in (("", slice(None)), ("_diag", on_site), ("_offdiag", ~on_site)):
            self._add(f"{split}{name}", err[sel].sum(), mask[sel].sum())
        return loss if training else loss.detach()

    def _add(self, key: str, total, count) -> None:
        s = self._sums.setdefault(key, torch.zeros(2, dtype=torch.float64, device=self.device))
        s[0] += torch.as_tensor(total).double()
        s[1] += count

    def _epoch_end(self, split: str) -> None:
        for name in ("", "_diag", "_offdiag", "_orth", "_occ"):
            s = self._sums.pop(f"{split}{name}", None)
            if s is None:
                continue
            s = self.all_gather(s).reshape(-1, 2).sum(0) if self.trainer.world_size > 1 else s
            self.log(f"{split}/h_mae{name}", float(s[0] / s[1].clamp(min=1)) * UHA, sync_dist=False)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.sparsity_scheduler.apply(self.model, int(self.global_step))


# --------------------------------------------------------------------------- run setup
@torch.no_grad()
def fit_reference(model, graphs, max_systems: int = 500) -> dict[str, float]:
    """Set ``model.diag_mean`` (per element: the rotation-invariant part of the mean on-site block,
    i.e. ``trace / (2l + 1)`` times the identity on each same-``l`` shell pair) and ``model.scale``
    (RMS of the remaining H entries), from up to ``max_systems`` training graphs. Returns both (Hartree).
    A Δ-learning model's reference is fitted on ``H - F0`` (the graphs must carry the baseline)."""
    from eqtool.models.hamiltonian.basis import MAX_AO, shells

    zs = model.atomic_numbers.tolist()
    sums = {z: np.zeros((MAX_AO, MAX_AO)) for z in zs}
    counts = dict.fromkeys(zs, 0)
    used = [graphs[i] for i in range(min(len(graphs), max_systems))]

    def target(g) -> np.ndarray:
        H = np.asarray(g.labels[K.HAMILTONIAN], dtype=np.float64)
        if getattr(model, "baseline", None) is not None:
            H = H - np.asarray(g.labels[K.HAMILTONIAN_BASELINE], dtype=np.float64)
        return H

    for g in used:
        n = g.n_atoms
        H = target(g)
        for a, z in enumerate(g.atomic_numbers.tolist()):
            if z not in sums:
                continue  # the model's element check reports it later
            sums[z] += H[a * n + a]
            counts[z] += 1
    mean = torch.zeros(len(zs), MAX_AO, MAX_AO, dtype=torch.float64)
    for e, z in enumerate(zs):
        if counts[z] == 0:
            continue
        m = sums[z] / counts[z]
        ls = shells(model.basis, z)
        starts = [sum(2 * l + 1 for l in ls[:s]) for s in range(len(ls))]
        proj = np.zeros_like(m)
        for sa, la in zip(starts, ls, strict=True):
            for sb, lb in zip(starts, ls, strict=True):
                if la == lb:
                    d = 2 * la + 1
                    proj[sa: sa + d, sb: sb + d] = np.trace(m[sa: sa + d, sb: sb + d]) / d * np.eye(d)
        idx = model.ao_index[e][model.ao_index[e] < MAX_AO]
        full = torch.zeros(MAX_AO, MAX_AO, dtype=torch.float64)
        k = len(idx)
        full[idx[:, None], idx[None, :]] = torch.from_numpy(proj[:k, :k])
        mean[e] = full
    model.diag_mean.copy_(mean.to(model.diag_mean.dtype))
    sq, cnt = 0.0, 0
    for g in used:
        n = g.n_atoms
        H = target(g).copy()
        elem = model.elements(torch.as_tensor(g.atomic_numbers)).tolist()
        for a in range(n):
            idx = model.ao_index[elem[a]]
            k = int((idx < MAX_AO).sum())
            full = mean[elem[a]][idx[:k][:, None], idx[:k][None, :]].numpy()
            H[a * n + a, :k, :k] -= full
        nz = H != 0
        sq += float((H[nz] ** 2).sum())
        cnt += int(nz.sum())
    scale = float(np.sqrt(sq / max(cnt, 1))) or 1.0
    model.scale.fill_(scale)
    return {"scale": scale, "n_systems": len(used)}


def _label_keys(cfg) -> tuple[str, ...]:
    """The labels batches need for the loss section ``cfg``."""
    keys = (K.HAMILTONIAN, K.OVERLAP) if cfg.orth > 0 or cfg.occ > 0 else (K.HAMILTONIAN,)
    return keys + ("n_occ",) if cfg.occ > 0 else keys


def prepare_hamiltonian(cfg, log=print):
    """Build ``cfg.model`` (elements from ``model.kwargs`` or the training split) with its reference
    fitted on the training split. Returns ``(model, datamodule)``."""
    from eqtool.models.registry import build_model, model_kwargs

    defaults = model_kwargs(cfg.model.name)
    if "basis" not in defaults:
        raise EqtoolError(f"model {cfg.model.name!r} does not predict a Hamiltonian; task 'hamiltonian' "
                          "needs model.name: qhnet", source="recipe")
    dtype = getattr(torch, cfg.trainer.dtype)
    basis = cfg.model.kwargs.get("basis", defaults["basis"])
    from eqtool.dft.baseline import check_baseline
    from eqtool.models.hamiltonian.basis import check_basis

    baseline = cfg.model.kwargs.get("baseline")
    if cfg.model.init_from and "baseline" not in cfg.model.kwargs:  # fine-tuning: the file's baseline
        from eqtool.models.files import read_model_file

        baseline = read_model_file(cfg.model.init_from)["config"].get("baseline")
    baseline = check_baseline(baseline)
    dm = HamiltonianDataModule(cfg.data, check_basis(basis), dtype, keys=_label_keys(cfg.loss),
                               baseline=baseline, log=log)
    dm.setup()
    train = dm.datasets["train"].graphs
    model = build_model(cfg.model.name, **{**cfg.model.kwargs, "baseline": baseline}).to(torch.float64)
    fitted = fit_reference(model, train)
    log(f"data: {cfg.data.path}: train {len(dm.splits['train'])}, val {len(dm.splits['val'])}, "
        f"test {len(dm.splits['test'])} molecules; basis {basis}; output scale {fitted['scale']:.4g} Ha "
        f"(fitted on {fitted['n_systems']})")
    return model.to(dtype), dm


def _molecule_name(g) -> str:
    from ase.data import chemical_symbols

    name = g.info.get("name") if isinstance(g.info, dict) else None
    if name:
        return str(name)
    zs, counts = np.unique(g.atomic_numbers, return_counts=True)
    return "".join(f"{chemical_symbols[z]}{c if c > 1 else ''}" for z, c in zip(zs, counts, strict=True))


@torch.no_grad()
def evaluate_hamiltonian(model, graphs, batch_size: int = 16, dtype: torch.dtype = torch.float64,
                         orbital_metrics: bool = True) -> dict[str, dict[str, float]]:
    """QH9 metrics (:func:`eqtool.dft.metrics.hamiltonian_metrics`) of ``model`` on ``graphs``,
    averaged per molecule name (``info["name"]`` or the formula) and over all (``"all"``).

    Without ``overlap``/``n_occ`` labels (or ``orbital_metrics=False``) only the H MAEs are given.
    """
    from eqtool.dft.basis import matrix_from_blocks
    from eqtool.dft.metrics import aggregate_metrics, hamiltonian_metrics
    from eqtool.models.hamiltonian.predict import predict_blocks

    model = model.to(dtype).eval()
    per: dict[str, list] = {}
    for g, blocks in zip(graphs, predict_blocks(model, graphs, batch_size), strict=True):
        zs = g.atomic_numbers
        Hp = matrix_from_blocks(blocks, zs)
        Hr = matrix_from_blocks(np.asarray(g.labels[K.HAMILTONIAN]), zs)
        if orbital_metrics and K.OVERLAP in g.labels and "n_occ" in g.labels:
            S = matrix_from_blocks(np.asarray(g.labels[K.OVERLAP]), zs)
            m = hamiltonian_metrics(Hp, Hr, S, int(g.labels["n_occ"]), zs)
        else:
            m = {"h_mae": float(np.abs(Hp - Hr).mean()) * UHA}
        per.setdefault(_molecule_name(g), []).append(m)
    out = {name: {**aggregate_metrics(ms), "n_systems": len(ms)} for name, ms in sorted(per.items())}
    out["all"] = {**aggregate_metrics([m for ms in per.values() for m in ms]),
                  "n_systems": sum(len(ms) for ms in per.values())}
    return out


def finish_hamiltonian(cfg, run_dir, dm, log=print) -> Path:
    """Export ``run_dir/model.pt`` (EMA weights of the last checkpoint, TP gates frozen) and write
    ``test_metrics.json`` (per molecule, µHa / %) and ``learning_curve.png``."""
    from eqtool.dft.metrics import METRIC_UNITS
    from eqtool.models.files import save_model
    from eqtool.tasks import report
    from eqtool.train import checkpoint_path, model_from_checkpoint

    run_dir = Path(run_dir)
    ckpt = checkpoint_path(run_dir, "last")  # data may grow between sessions: "best" mixes val sets
    model = model_from_checkpoint(ckpt)
    SparsityScheduler(0, 0).apply(model, 0)  # the inference model runs the fixed, pruned TP
    dm.setup()
    split = "test" if len(dm.splits.get("test", ())) else "val"
    metrics = evaluate_hamiltonian(model, dm.datasets[split].graphs, batch_size=cfg.data.val_batch_size or 16)
    result = {"split": split, "n_systems": int(len(dm.splits[split])), "data": str(cfg.data.path),
              "n_train": int(len(dm.splits["train"])), "units": METRIC_UNITS, "molecules": metrics}
    report.write_json(run_dir / "test_metrics.json", result)
    out = save_model(model, run_dir / "model.pt", extra={"checkpoint": ckpt.name, "test_metrics": result})
    try:
        with warnings.catch_warnings():  # its MAE panel is for potentials: empty legend here
            warnings.simplefilter("ignore", UserWarning)
            report.learning_curve(run_dir / "logs", run_dir / "learning_curve.png")
    except Exception as exc:  # a plot is not worth failing a finished training for
        log(f"learning curve not drawn ({type(exc).__name__}: {exc})")
    summary = ", ".join(f"{k}: H MAE {v.get('h_mae', float('nan')):.1f} µHa" for k, v in metrics.items())
    log(f"wrote {out} and test_metrics.json ({split}: {summary})")
    return out


def train_hamiltonian(config, resume: bool = False, log=print) -> Path:
    """Train a ``task: hamiltonian`` recipe; return the run folder (layout of
    :func:`eqtool.train.train`: ``config.yaml``, ``model_config.json``, ``checkpoints/``, ``logs/``,
    ``model.pt``, ``test_metrics.json``)."""
    from eqtool.train import fit, model_from_last

    def setup(last, log):
        if last is None:
            return prepare_hamiltonian(config, log=log)
        dtype = getattr(torch, config.trainer.dtype)
        model = model_from_last(last, dtype)
        return model, HamiltonianDataModule(config.data, model.basis, dtype, keys=_label_keys(config.loss),
                                            baseline=getattr(model, "baseline", None), log=log)

    return fit(config, resume, log, setup, HamiltonianTask, finish_hamiltonian)
