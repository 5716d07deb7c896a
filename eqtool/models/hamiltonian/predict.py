"""Predicted Fock matrices of whole molecules from a Hamiltonian model (what ``eqtool predict`` needs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from eqtool.data import keys as K
from eqtool.data.batch import collate

__all__ = ["model_batch", "predict_blocks", "predict_matrices"]


def model_batch(model: torch.nn.Module, graphs: Sequence, dtype: torch.dtype | None = None,
                device=None) -> dict[str, torch.Tensor]:
    """The batch ``model`` needs for ``graphs`` (no labels): structure, plus the ``hamiltonian_baseline``
    blocks of a Δ-learning model (computed with PySCF where a graph does not carry them)."""
    p = next(model.parameters())
    baseline = getattr(model, "baseline", None)
    keys: tuple[str, ...] = ()
    if baseline is not None:
        from eqtool.dft.baseline import with_baseline

        graphs = with_baseline(graphs, baseline, model.basis)
        keys = (K.HAMILTONIAN_BASELINE,)
    batch = collate(list(graphs), dtype=dtype or p.dtype, label_keys=keys)
    return {k: v.to(device or p.device) for k, v in batch.items()}


@torch.no_grad()
def predict_blocks(model: torch.nn.Module, graphs: Sequence, batch_size: int = 16) -> list[np.ndarray]:
    """Pair blocks ``[n_i^2, 14, 14]`` (Hartree, PySCF AO order) per graph, float64 numpy.

    Runs in the model's dtype and device, ``batch_size`` molecules at a time (a Δ-learning model's
    baseline is computed here unless the graphs carry it, see :func:`model_batch`).
    """
    out = []
    for s in range(0, len(graphs), batch_size):
        chunk = [graphs[k] for k in range(s, min(s + batch_size, len(graphs)))]
        blocks = model(model_batch(model, chunk))[K.HAMILTONIAN].double().cpu().numpy()
        off = 0
        for g in chunk:
            n2 = g.n_atoms ** 2
            out.append(blocks[off: off + n2])
            off += n2
    return out


def predict_matrices(model: torch.nn.Module, graphs: Sequence, batch_size: int = 16) -> list[np.ndarray]:
    """Full ``[n_ao, n_ao]`` Fock matrices (Hartree, PySCF AO order) per graph."""
    from eqtool.dft.basis import matrix_from_blocks

    return [matrix_from_blocks(b, g.atomic_numbers)
            for b, g in zip(predict_blocks(model, graphs, batch_size), graphs, strict=True)]
