"""``eqtool predict`` for Hamiltonian models: Fock matrix, orbital energies, HOMO/LUMO/gap (+ SCF).

The model maps the flat batch dict to a dict with ``"hamiltonian"`` ``[sum n_i², 14, 14]`` AO blocks
(PySCF order, Hartree; :mod:`eqtool.dft.basis`). Overlaps come from PySCF (``eqtool[dft]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError

__all__ = ["predict_hamiltonian"]


def _device_dtype(net) -> tuple[torch.device, torch.dtype]:
    params = getattr(net, "parameters", None)
    p = next(iter(params()), None) if callable(params) else None
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float64)


def _predict_blocks(net: Callable, graph: AtomGraph) -> np.ndarray:
    """``[n², 14, 14]`` float64 blocks predicted for one system."""
    from eqtool.data.batch import collate
    from eqtool.dft.basis import MAX_AO

    device, dtype = _device_dtype(net)
    if getattr(net, "baseline", None) is not None:  # Δ-learning: the batch carries F0 (PySCF)
        from eqtool.models.hamiltonian.predict import model_batch

        batch = model_batch(net, [graph], dtype, device)
    else:
        batch = collate([graph], dtype=dtype, cutoff=getattr(net, "cutoff", None), label_keys=())
        batch = {k: v.to(device) for k, v in batch.items()}
    with torch.no_grad():
        out = net(batch)
    if "hamiltonian" not in out:
        raise EqtoolError("the model does not predict a Hamiltonian (no 'hamiltonian' output)", "--model")
    blocks = out["hamiltonian"].detach().cpu().double().numpy()
    n = graph.n_atoms
    if blocks.shape != (n * n, MAX_AO, MAX_AO):
        raise EqtoolError(f"model returned Hamiltonian blocks of shape {list(blocks.shape)}, expected "
                          f"[{n * n}, {MAX_AO}, {MAX_AO}]", "--model")
    return blocks


def predict_hamiltonian(graphs: Sequence[AtomGraph], net: Callable, out: Path, scf: bool, console,
                        charge: int = 0) -> None:
    """Predict the Fock matrix of each molecule, write ``out`` (eqtool HDF5) and print a table.

    Args:
        graphs: molecules (non-periodic), elements in the model's basis (def2-SVP: H, C, N, O, F).
        net: Hamiltonian model (``nn.Module`` or any callable) batch dict -> ``{"hamiltonian": ...}``.
        out: output ``.h5``, written atomically: per system the pair labels ``hamiltonian``
            (predicted, Hartree) and ``overlap``, system labels ``mo_energy`` (zero-padded to the
            largest ``n_ao``), ``n_ao``, ``n_occ``, ``homo``, ``lumo``, ``gap`` (Hartree) and, with
            ``scf``, ``scf_cycles_guess`` / ``scf_cycles_minao`` / ``dft_energy_hartree`` /
            ``energy`` (eV, from the SCF started at the prediction).
        scf: also run PySCF B3LYP from ``dm0 = 2 C_occ C_occᵀ`` and from minao and count cycles.
        console: a ``rich.console.Console`` for the table.
        charge: total charge of every molecule (closed shell required).
    """
    from rich.table import Table

    from eqtool.dft.basis import ao_counts, matrix_from_blocks
    from eqtool.dft.eigen import orbital_energies
    from eqtool.dft.h5 import hamiltonian_graph, write_hamiltonian_h5
    from eqtool.dft.metrics import frontier
    from eqtool.dft.pyscf_tools import build_mol, pyscf_version, scf_from_guess

    if not graphs:
        raise EqtoolError("no structures to predict", "inputs")
    for g in graphs:
        if np.any(g.pbc):
            raise EqtoolError("Hamiltonian prediction needs molecules; this structure is periodic",
                              g.source or "input")
        try:
            ao_counts(g.atomic_numbers)
        except EqtoolError as exc:
            raise EqtoolError(exc.message, g.source or "input") from None
    mo_pad = max(int(ao_counts(g.atomic_numbers).sum()) for g in graphs)
    results, rows = [], []
    for g in graphs:
        mol = build_mol(g.atomic_numbers, g.positions, charge=charge)
        if mol.nelectron % 2:
            raise EqtoolError(f"{mol.nelectron} electrons: only closed-shell molecules are supported",
                              g.source or "input")
        H = matrix_from_blocks(_predict_blocks(net, g), g.atomic_numbers)
        H = 0.5 * (H + H.T)
        S = mol.intor("int1e_ovlp")
        eps, _ = orbital_energies(H, S)
        n_occ = mol.nelectron // 2
        homo, lumo, gap = frontier(eps, n_occ)
        extra, e_ha, row = {}, None, [g.source or "", str(g.n_atoms), f"{homo:.6f}", f"{lumo:.6f}",
                                      f"{gap * 27.211386245988:.3f}"]
        if scf:
            r = scf_from_guess(mol, H, S)
            extra = {"scf_cycles_guess": r["cycles_guess"], "scf_cycles_minao": r["cycles_minao"]}
            e_ha = r["energy_guess"]
            row += [f"{r['cycles_guess']} / {r['cycles_minao']}", f"{r['ratio']:.2f}"]
        info = {"source": g.source or ""}
        results.append(hamiltonian_graph(g.atomic_numbers, g.positions, H, S, eps, n_occ, mo_pad,
                                         energy_hartree=e_ha, extra=extra, info=info, source=g.source))
        rows.append(row)
    write_hamiltonian_h5(out, results, source="eqtool predict (Hamiltonian model)",
                         level_of_theory=f"model prediction of B3LYP/def2-SVP (PySCF {pyscf_version()})",
                         attrs={"mo_energy_pad": mo_pad, "predicted": True}, info_keys=("source",))
    table = Table(title=f"predicted Hamiltonians -> {out}")
    for col in ("structure", "atoms", "HOMO (Ha)", "LUMO (Ha)", "gap (eV)"):
        table.add_column(col, justify="left" if col == "structure" else "right")
    if scf:
        table.add_column("SCF cycles guess / minao", justify="right")
        table.add_column("ratio", justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if scf:
        ratio = sum(int(r.labels["scf_cycles_guess"]) for r in results) / max(
            1, sum(int(r.labels["scf_cycles_minao"]) for r in results))
        console.print(f"SCF cycle ratio (predicted guess / minao, all molecules): {ratio:.3f}",
                      markup=False, highlight=False)
