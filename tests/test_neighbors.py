"""Neighbour lists (vesin and pure-torch) against ASE, batching, dispatch and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.geometry import cellpar_to_cell
from ase.neighborlist import neighbor_list as ase_neighbor_list
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from eqtool.data import keys as K
from eqtool.data import neighbors
from eqtool.data.batch import collate
from eqtool.data.graph import AtomGraph
from eqtool.data.neighbors import (
    batch_neighbor_list,
    neighbor_list,
    torch_neighbor_list,
    vesin_neighbor_list,
)
from eqtool.errors import EqtoolError

PBC_CHOICES = [  # fully periodic first: hypothesis favours early entries
    (True, True, True), (True, True, False), (True, False, True), (False, True, True),
    (True, False, False), (False, True, False), (False, False, True), (False, False, False),
]
TIE = 1e-6  # Å; cases with an image distance this close to the cutoff are skipped (ties)


# ------------------------------------------------------------------ helpers
def edge_set(edge_index, edge_shift) -> list[tuple]:
    """Sorted ``(receiver i, sender j, S)`` tuples."""
    ei = np.asarray(edge_index)
    sh = np.rint(np.asarray(edge_shift)).astype(np.int64)
    return sorted(zip(ei[1].tolist(), ei[0].tolist(), map(tuple, sh.tolist()), strict=True))


def ase_reference(positions, cell, pbc, cutoff, reject_ties=True) -> list[tuple]:
    """ASE's ``(i, j, S)`` list for ``cutoff``; rejects (hypothesis) cases where a distance ties it."""
    atoms = Atoms(positions=positions, cell=cell, pbc=pbc)
    i, j, S, d = ase_neighbor_list("ijSd", atoms, cutoff + TIE, self_interaction=False)
    if reject_ties:
        assume(not np.any(np.abs(d - cutoff) < TIE))
    keep = d < cutoff
    return sorted(zip(i[keep].tolist(), j[keep].tolist(), map(tuple, S[keep].tolist()), strict=True))


def run_torch(positions, cell, pbc, cutoff):
    return torch_neighbor_list(torch.tensor(positions), torch.tensor(cell), torch.tensor(pbc), cutoff)


def check_contract(positions, cell, pbc, cutoff, edge_index, edge_shift):
    """Edge vectors are shorter than the cutoff; no self-pair at zero shift; no shift if not periodic."""
    ei, sh = np.asarray(edge_index), np.asarray(edge_shift)
    assert ei.dtype == np.int64 and sh.dtype == np.int64
    assert ei.shape == (2, sh.shape[0]) and sh.shape[1:] == (3,)
    vec = positions[ei[0]] - positions[ei[1]] + sh @ cell
    assert np.all(np.linalg.norm(vec, axis=1) < cutoff)
    assert not np.any((ei[0] == ei[1]) & ~sh.any(axis=1))
    assert not np.any(sh[:, ~np.asarray(pbc)])


# --------------------------------------------------------------- strategies
@st.composite
def periodic_systems(draw):
    """Random triclinic cell (lengths 1.5-6 Å, random orientation), 1-12 atoms, any pbc, cutoff."""
    lengths = [draw(st.floats(1.5, 6.0)) for _ in range(3)]
    angles = [draw(st.floats(45.0, 135.0)) for _ in range(3)]
    alpha, beta, gamma = angles
    # the three angles must describe a real cell
    assume(alpha < beta + gamma and beta < alpha + gamma and gamma < alpha + beta)
    assume(alpha + beta + gamma < 360.0)
    cell = cellpar_to_cell(lengths + angles)
    q = np.array([draw(st.floats(-1.0, 1.0)) for _ in range(4)])
    assume(np.linalg.norm(q) > 0.2)
    w, x, y, z = q / np.linalg.norm(q)
    rot = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    cell = cell @ rot.T
    # reject nearly flat cells: every plane height at least 35% of the longest vector
    volume = abs(np.linalg.det(cell))
    heights = [volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    assume(min(heights) > 0.35 * max(lengths))
    n = draw(st.integers(1, 12))
    frac = np.array([[draw(st.floats(-0.3, 1.3)) for _ in range(3)] for _ in range(n)]).reshape(n, 3)
    pbc = np.array(draw(st.sampled_from(PBC_CHOICES)))
    cutoff = draw(st.floats(0.5, 6.0))
    return frac @ cell, cell, pbc, cutoff


@st.composite
def molecules(draw):
    """1-12 atoms in a 10 Å box, no cell, no pbc."""
    n = draw(st.integers(1, 12))
    pos = np.array([[draw(st.floats(-5.0, 5.0)) for _ in range(3)] for _ in range(n)]).reshape(n, 3)
    return pos, np.zeros((3, 3)), np.zeros(3, dtype=bool), draw(st.floats(0.5, 8.0))


# ------------------------------------------------------- property tests vs ASE
@settings(max_examples=220, deadline=None, derandomize=True)
@given(periodic_systems())
def test_periodic_matches_ase(system):
    positions, cell, pbc, cutoff = system
    ref = ase_reference(positions, cell, pbc, cutoff)
    reach = max((max(abs(v) for v in S) for _, _, S in ref), default=0)
    event(f"pbc={''.join('TF'[not p] for p in pbc)}")
    event(f"max |S_k| = {min(reach, 3)}{'+' if reach >= 3 else ''}")
    for fn in (vesin_neighbor_list, run_torch):
        ei, sh = fn(positions, cell, pbc, cutoff)
        ei, sh = np.asarray(ei), np.asarray(sh)
        assert edge_set(ei, sh) == ref, fn.__name__
        check_contract(positions, cell, pbc, cutoff, ei, sh)
    if not pbc.all():
        # the vectors of non-periodic directions never matter: zero them
        flat = np.where(pbc[:, None], cell, 0.0)
        for fn in (vesin_neighbor_list, run_torch):
            assert edge_set(*fn(positions, flat, pbc, cutoff)) == ref, fn.__name__


@settings(max_examples=60, deadline=None, derandomize=True)
@given(molecules())
def test_molecule_matches_ase(system):
    positions, cell, pbc, cutoff = system
    ref = ase_reference(positions, cell, pbc, cutoff)
    for fn in (vesin_neighbor_list, run_torch):
        ei, sh = fn(positions, cell, pbc, cutoff)
        assert edge_set(ei, sh) == ref, fn.__name__
        assert not np.asarray(sh).any()


def test_own_images_in_tiny_cell():
    """One atom in a 2 Å cubic cell with a 4.5 Å cutoff sees its own images out to |S| = 2."""
    pos, cell, pbc = np.zeros((1, 3)), 2.0 * np.eye(3), np.ones(3, dtype=bool)
    expected = sorted(
        (0, 0, (a, b, c)) for a in range(-2, 3) for b in range(-2, 3) for c in range(-2, 3)
        if 0 < 4.0 * (a * a + b * b + c * c) < 4.5**2
    )
    assert len(expected) == 6 + 12 + 8 + 6 + 24  # shells at 2, 2.83, 3.46, 4, 4.47 Å
    for fn in (vesin_neighbor_list, run_torch):
        assert edge_set(*fn(pos, cell, pbc, 4.5)) == expected


def test_unwrapped_positions_shift_convention():
    """Atoms far outside the cell: shifts refer to the given (unwrapped) positions."""
    cell = np.array([[3.0, 0.0, 0.0], [1.0, 3.0, 0.0], [0.5, 0.5, 3.0]])
    pos = np.array([[0.1, 0.2, 0.3], [7.4, -5.0, 9.9], [-8.0, 1.0, -4.0]])
    pbc = np.ones(3, dtype=bool)
    ref = ase_reference(pos, cell, pbc, 3.5, reject_ties=False)
    assert edge_set(*run_torch(pos, cell, pbc, 3.5)) == ref
    assert edge_set(*vesin_neighbor_list(pos, cell, pbc, 3.5)) == ref


def test_torch_chunking(monkeypatch):
    """Forcing tiny chunks (over receivers and over sender images) changes nothing."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=1)
    args = (atoms.positions, atoms.cell.array, atoms.pbc, 4.0)
    full = edge_set(*run_torch(*args))
    assert full == edge_set(*vesin_neighbor_list(*args))
    for chunk in (7, 100, 5000):
        monkeypatch.setattr(neighbors, "_CHUNK", chunk)
        assert edge_set(*run_torch(*args)) == full


def test_torch_output_order_and_dtypes():
    atoms = molecule("CH3CH2OH")
    ei, sh = torch_neighbor_list(torch.tensor(atoms.positions, dtype=torch.float32),
                                 torch.zeros(3, 3), torch.zeros(3, dtype=torch.bool), 2.0)
    assert ei.dtype == torch.long and sh.dtype == torch.long
    key = ei[1] * len(atoms) + ei[0]
    assert torch.all(key[1:] > key[:-1])  # sorted by receiver then sender, no duplicates


def test_float32_and_grad_inputs():
    atoms = bulk("Si", "diamond", a=5.43).repeat((2, 1, 1))
    atoms.rattle(0.1, seed=3)
    pos = torch.tensor(atoms.positions, dtype=torch.float32, requires_grad=True)
    cell = torch.tensor(atoms.cell.array, dtype=torch.float32)
    pbc = torch.tensor(atoms.pbc)
    ei, sh = torch_neighbor_list(pos, cell, pbc, 3.0)
    ref = vesin_neighbor_list(pos.detach().double().numpy(), cell.double().numpy(), atoms.pbc, 3.0)
    assert edge_set(ei, sh) == edge_set(*ref)


# ----------------------------------------------------------------- dispatch
def test_dispatch_types():
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    pos, cell, pbc = atoms.positions, atoms.cell.array, atoms.pbc
    ref = edge_set(*vesin_neighbor_list(pos, cell, pbc, 5.0))
    out = neighbor_list(pos, cell, pbc, 5.0)
    assert isinstance(out[0], np.ndarray) and edge_set(*out) == ref
    out = neighbor_list(pos, cell, pbc, 5.0, method="torch")
    assert isinstance(out[0], np.ndarray) and out[1].dtype == np.int64 and edge_set(*out) == ref
    for method in ("auto", "vesin", "torch"):
        ei, sh = neighbor_list(torch.tensor(pos), torch.tensor(cell), torch.tensor(pbc), 5.0, method=method)
        assert isinstance(ei, torch.Tensor) and ei.dtype == torch.long and sh.dtype == torch.long
        assert edge_set(ei, sh) == ref


def test_dispatch_auto_picks_torch_off_cpu(monkeypatch):
    """``auto`` sends CPU tensors to vesin and tensors on other devices to the torch path."""
    calls = []

    def fake(positions, cell, pbc, cutoff):
        calls.append(positions.device.type)
        return "torch-path", None

    monkeypatch.setattr(neighbors, "torch_neighbor_list", fake)
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    cell, pbc = torch.zeros(3, 3), torch.zeros(3, dtype=torch.bool)
    ei, _ = neighbor_list(pos, cell, pbc, 2.0)
    assert calls == [] and ei.shape == (2, 2)
    assert neighbor_list(pos.to("meta"), cell, pbc, 2.0)[0] == "torch-path"
    assert neighbor_list(pos, cell, pbc, 2.0, method="torch")[0] == "torch-path"
    assert calls == ["meta", "cpu"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_vesin():
    atoms = bulk("Fe", "bcc", a=2.87).repeat((3, 2, 2))
    atoms.rattle(0.05, seed=2)
    atoms.set_cell(atoms.cell.array + np.array([[0, 0.3, 0], [0, 0, 0.2], [0.1, 0, 0]]), scale_atoms=True)
    dev = torch.device("cuda")
    cell, pbc = torch.tensor(atoms.cell.array, device=dev), torch.tensor(atoms.pbc, device=dev)
    ei, sh = neighbor_list(torch.tensor(atoms.positions, device=dev), cell, pbc, 5.5)
    assert ei.device.type == "cuda" and sh.device.type == "cuda"
    ref = vesin_neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 5.5)
    assert edge_set(ei.cpu(), sh.cpu()) == edge_set(*ref)


# ------------------------------------------------------------------ batching
@st.composite
def batches(draw):
    """2-5 systems (some empty or single-atom, some periodic) as a flat batch dict."""
    systems = []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.sampled_from([0, 1, 1, 2, 3, 5, 8]))
        box = draw(st.floats(2.0, 6.0))
        pbc = np.array([draw(st.booleans()) for _ in range(3)])
        cell = box * np.eye(3) + np.triu(np.full((3, 3), 0.4 * box), 1)
        frac = np.array([[draw(st.floats(0.0, 1.0)) for _ in range(3)] for _ in range(n)]).reshape(n, 3)
        systems.append((frac @ cell, cell, pbc))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    batch = {
        K.POSITIONS: torch.tensor(np.concatenate([s[0] for s in systems]), dtype=dtype),
        K.CELL: torch.tensor(np.stack([s[1] for s in systems]), dtype=dtype),
        K.PBC: torch.tensor(np.stack([s[2] for s in systems])),
        K.N_ATOMS: torch.tensor([len(s[0]) for s in systems]),
    }
    return batch, systems, draw(st.floats(1.0, 5.0))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(batches())
def test_batch_equals_per_system(data):
    batch, systems, cutoff = data
    dtype = batch[K.POSITIONS].dtype
    for fn in (None, torch_neighbor_list):
        ei, sh = batch_neighbor_list(batch, cutoff, neighbor_fn=fn)
        assert ei.dtype == torch.long and sh.dtype == dtype
        expected, offset = [], 0
        for b, (pos, _, pbc) in enumerate(systems):
            # per-system lists from the batch's own (possibly float32) numbers
            p = batch[K.POSITIONS][offset:offset + len(pos)].double().numpy()
            e, s = vesin_neighbor_list(p, batch[K.CELL][b].double().numpy(), pbc, cutoff)
            expected += [(i + offset, j + offset, S) for i, j, S in edge_set(e, s)]
            offset += len(pos)
        assert edge_set(ei, sh) == sorted(expected)


def test_batch_matches_collate():
    graphs = [
        AtomGraph.from_ase(bulk("Cu", "fcc", a=3.6), source="cu"),
        AtomGraph.from_ase(molecule("H2O"), source="h2o"),
        AtomGraph.from_ase(Atoms("Ar", positions=[[0, 0, 0]]), source="ar"),
        AtomGraph.from_ase(bulk("Si", "diamond", a=5.43).repeat((1, 1, 2)), source="si"),
    ]
    batch = collate(graphs, dtype=torch.float32, cutoff=4.0)
    ei, sh = batch_neighbor_list(batch, 4.0)
    assert torch.equal(ei, batch[K.EDGE_INDEX]) and torch.equal(sh, batch[K.EDGE_SHIFT])
    ei, sh = batch_neighbor_list(batch, 4.0, neighbor_fn=torch_neighbor_list)
    assert edge_set(ei, sh) == edge_set(batch[K.EDGE_INDEX], batch[K.EDGE_SHIFT])


def test_batch_of_empty_and_single_atoms():
    batch = {
        K.POSITIONS: torch.tensor([[0.0, 0.0, 0.0]]),
        K.CELL: torch.stack([torch.zeros(3, 3), 2.0 * torch.eye(3), torch.zeros(3, 3)]),
        K.PBC: torch.tensor([[False] * 3, [True] * 3, [False] * 3]),
        K.N_ATOMS: torch.tensor([0, 1, 0]),
    }
    ei, sh = batch_neighbor_list(batch, 1.5)
    assert ei.shape == (2, 0) and sh.shape == (0, 3) and sh.dtype == torch.float32
    ei, sh = batch_neighbor_list(batch, 2.5)  # the periodic atom sees its 6 face images
    faces = sorted(tuple(float(s * (k == d)) for k in range(3)) for d in range(3) for s in (-1, 1))
    assert ei.tolist() == [[0] * 6, [0] * 6] and sorted(map(tuple, sh.tolist())) == faces


# -------------------------------------------------------------------- errors
def test_empty_and_single_atom_systems():
    for fn in (vesin_neighbor_list, run_torch):
        ei, sh = fn(np.zeros((0, 3)), np.eye(3), np.ones(3, dtype=bool), 3.0)
        assert ei.shape == (2, 0) and sh.shape == (0, 3)
        ei, sh = fn(np.zeros((1, 3)), np.zeros((3, 3)), np.zeros(3, dtype=bool), 3.0)
        assert ei.shape == (2, 0) and sh.shape == (0, 3)


@pytest.mark.parametrize("method", ["vesin", "torch"])
@pytest.mark.parametrize("cutoff", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_cutoff(method, cutoff):
    with pytest.raises(EqtoolError, match="cutoff"):
        neighbor_list(np.zeros((2, 3)), np.eye(3), np.ones(3, dtype=bool), cutoff, method=method)


def test_bad_inputs_torch_path():
    pbc = torch.ones(3, dtype=torch.bool)
    flat = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [2.0, 2.0, 0]])
    with pytest.raises(EqtoolError, match="degenerate"):
        torch_neighbor_list(torch.zeros(2, 3), flat, pbc, 3.0)
    with pytest.raises(EqtoolError, match="periodic images"):
        torch_neighbor_list(torch.zeros(2, 3), 0.01 * torch.eye(3), pbc, 3.0)
    with pytest.raises(EqtoolError, match="zero length"):
        torch_neighbor_list(torch.zeros(2, 3), torch.zeros(3, 3), pbc, 3.0)
    with pytest.raises(EqtoolError, match="NaN"):
        torch_neighbor_list(torch.full((2, 3), float("nan")), torch.eye(3), pbc, 3.0)
    with pytest.raises(EqtoolError, match="shape"):
        torch_neighbor_list(torch.zeros(2, 2), torch.eye(3), pbc, 3.0)
    with pytest.raises(EqtoolError, match="method"):
        neighbor_list(np.zeros((2, 3)), np.eye(3), np.ones(3, dtype=bool), 3.0, method="cuda")
    with pytest.raises(EqtoolError, match="n_atoms"):
        batch_neighbor_list({K.POSITIONS: torch.zeros(3, 3), K.CELL: torch.zeros(1, 3, 3),
                             K.PBC: torch.zeros(1, 3, dtype=torch.bool), K.N_ATOMS: torch.tensor([2])}, 2.0)
