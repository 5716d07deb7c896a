"""Batched inference of a potential over host-side graphs (used by ``eqtool predict``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from eqtool.data import keys as K
from eqtool.data.graph import AtomGraph

__all__ = ["predict_graphs", "resolve_device", "PREDICTED"]

# labels replaced by predictions (reference values of these are dropped from the output)
PREDICTED = (K.ENERGY, K.FORCES, K.STRESS, K.ENERGIES)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; otherwise ``torch.device(device)``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from eqtool.errors import EqtoolError

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise EqtoolError(f"unknown device {device!r}; use cpu, cuda, cuda:1 or auto",
                          source="--device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EqtoolError("CUDA is not available on this machine", source="--device")
    return dev


def predict_graphs(model: torch.nn.Module, graphs: Sequence[AtomGraph], batch_size: int = 16,
                   progress: Callable[[int], None] | None = None) -> list[AtomGraph]:
    """Predict energy (eV), forces (eV/Å), per-atom energies and stress (eV/Å³, fully periodic only).

    Args:
        model: an energy model (on its device, in its dtype) with ``.cutoff``.
        graphs: systems to predict; they are not modified.
        batch_size: systems per forward pass.
        progress: called with the number of systems done after each batch.

    Returns:
        copies of ``graphs`` whose labels hold the predictions (other labels kept).
    """
    from eqtool.data.batch import collate
    from eqtool.physics import compute_outputs

    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float64
    out: list[AtomGraph] = []
    for start in range(0, len(graphs), batch_size):
        chunk = list(graphs[start:start + batch_size])
        batch = {k: v.to(device) for k, v in collate(chunk, dtype=dtype, cutoff=model.cutoff,
                                                       label_keys=()).items()}
        periodic = torch.stack([torch.as_tensor(bool(np.all(g.pbc))) for g in chunk])
        with torch.enable_grad():
            pred = compute_outputs(model, batch, forces=True, stress=bool(periodic.any()), training=False)
        arrays = {k: v.detach().cpu().double().numpy() for k, v in pred.items()}
        offsets = np.concatenate([[0], np.cumsum([g.n_atoms for g in chunk])])
        for b, g in enumerate(chunk):
            sl = slice(offsets[b], offsets[b + 1])
            labels = {k: v for k, v in g.labels.items() if k not in PREDICTED}
            labels[K.ENERGY] = np.asarray(arrays[K.ENERGY][b])
            labels[K.FORCES] = arrays[K.FORCES][sl]
            if K.ENERGIES in arrays:
                labels[K.ENERGIES] = arrays[K.ENERGIES][sl]
            if periodic[b] and K.STRESS in arrays:
                labels[K.STRESS] = arrays[K.STRESS][b]
            out.append(g._copy(labels=labels, edge_index=None, edge_shift=None))
        if progress is not None:
            progress(len(out))
    return out
