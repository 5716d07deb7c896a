"""QHNet Hamiltonian model: AO conventions, O(3) equivariance (block-wise Wigner-D in PySCF order),
permutation, batch == single, sparse gates, bad input, and training end to end.

Targets that are exactly equivariant come from PySCF directly: the overlap ``int1e_ovlp`` and the
core Hamiltonian ``int1e_kin + int1e_nuc`` (needs ``pyscf``, the ``dft`` extra).
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from e3nn import o3

from eqtool.data import keys as K
from eqtool.data.batch import collate
from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError
from eqtool.models.hamiltonian.basis import MAX_AO, ao_count, ao_rotation, change_of_basis
from eqtool.models.hamiltonian.qhnet import QHNet
from eqtool.models.registry import build_model

BASIS = "def2-svp"


def _pyscf_mol(numbers, positions):
    from pyscf import gto

    return gto.M(atom=[(int(z), tuple(p)) for z, p in zip(numbers, positions, strict=True)], basis=BASIS,
                 unit="Angstrom")


def _rattled(name, seed, scale=0.1):
    atoms = molecule(name)
    atoms.positions += np.random.default_rng(seed).normal(scale=scale, size=atoms.positions.shape)
    return atoms


def _graph(atoms):
    return AtomGraph.from_ase(atoms, source="test")


def _full(blocks, numbers):
    """Pair blocks ``[n^2, 14, 14]`` -> ``[n_ao, n_ao]`` matrix."""
    n = len(numbers)
    naos = [ao_count(BASIS, int(z)) for z in numbers]
    starts = np.concatenate([[0], np.cumsum(naos)])
    out = torch.zeros(starts[-1], starts[-1], dtype=blocks.dtype)
    for a in range(n):
        for b in range(n):
            out[starts[a]: starts[a + 1], starts[b]: starts[b + 1]] = blocks[a * n + b, : naos[a], : naos[b]]
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=2, sparsity=0.0).double().eval()
    with torch.no_grad():  # a non-trivial (rotation-invariant) reference so the assembly is tested too
        ss = torch.randn(3, 3, 3, dtype=torch.float64)
        m.diag_mean.copy_(torch.eye(MAX_AO, dtype=torch.float64) * torch.randn(3, 1, 1, dtype=torch.float64))
        m.diag_mean[:, :3, :3] += ss + ss.transpose(1, 2)  # s-s couplings are invariant
        m.scale.fill_(0.7)
    return m


def _gated_model(seed: int, **kwargs) -> QHNet:
    """A small sparse (0.7) QHNet in float64 with random TP-gate weights, so pruning picks varied paths."""
    torch.manual_seed(seed)
    m = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=2, sparsity=0.7, **kwargs).double().eval()
    with torch.no_grad():
        for tp in (m.pair_tp, getattr(m, "pair_tp2", None)):
            if tp is not None:
                tp.gate.weight.normal_()
    return m


@pytest.fixture(scope="module")
def sparse_model():
    return _gated_model(1)


@pytest.fixture(scope="module")
def sparse2_model():
    """SPHNet's layout: every pair runs a first (here narrower: 4 of 8 channels) product, the gated
    pairs a second one."""
    return _gated_model(2, pair_layers=2, pair_tp_channels=4)


@pytest.fixture(scope="module")
def copies_model():
    """Pair products over two copies of the hidden irreps (4 channels each): 4 x 19 CG paths."""
    return _gated_model(3, pair_layers=2, pair_tp_copies=2)


# ---------------------------------------------------------------------------- AO conventions
@pytest.mark.parametrize("l", [1, 2])
def test_change_of_basis_matches_pyscf_ao_values(l):
    """PySCF's AO values of one shell, divided by their radial part, are e3nn's harmonics @ M."""
    mol = _pyscf_mol([8], [[0.0, 0.0, 0.0]])
    mol.charge, mol.spin = -2, 0
    mol.build()
    pts = np.random.default_rng(0).normal(size=(50, 3))
    ao = mol.eval_gto("GTOval_sph", pts)[:, {1: slice(3, 6), 2: slice(9, 14)}[l]]  # first p / the d shell
    y = o3.spherical_harmonics(l, torch.tensor(pts), normalize=True, normalization="component").numpy()
    ratio = ao / np.linalg.norm(ao, axis=1, keepdims=True)
    pred = y @ change_of_basis(l).numpy()
    pred /= np.linalg.norm(pred, axis=1, keepdims=True)
    np.testing.assert_allclose(pred, ratio, atol=1e-10)
    M = change_of_basis(l)
    torch.testing.assert_close(M @ M.T, torch.eye(2 * l + 1, dtype=torch.float64))


@pytest.mark.parametrize("improper", [False, True])
def test_ao_rotation_rotates_pyscf_overlap_and_hcore(improper):
    atoms = _rattled("CH3CH2OH", 0)
    R = o3.rand_matrix(dtype=torch.float64) * (-1.0 if improper else 1.0)
    pos = atoms.positions
    mol, mol_r = _pyscf_mol(atoms.numbers, pos), _pyscf_mol(atoms.numbers, pos @ R.numpy().T)
    U = ao_rotation(BASIS, atoms.numbers, R).numpy()
    for key in ("int1e_ovlp", "int1e_kin"):
        np.testing.assert_allclose(U @ mol.intor(key) @ U.T, mol_r.intor(key), atol=1e-10)
    assert ao_count(BASIS, 1) == 5 and ao_count(BASIS, 8) == 14 == MAX_AO


# ---------------------------------------------------------------------------- model symmetries
def _predict(m, graphs, seed=0):
    torch.manual_seed(seed)  # the random phase of a training-mode TP gate draws paths
    return m(collate(graphs, dtype=torch.float64))[K.HAMILTONIAN]


@pytest.mark.parametrize("which", ["dense", "sparse", "sparse_train_random", "sparse2",
                                   "sparse2_train_random", "copies", "copies_train_random"])
@pytest.mark.parametrize("improper", [False, True])
def test_equivariance_blockwise_wigner_d(model, sparse_model, sparse2_model, copies_model, which, improper):
    m = {"dense": model, "sparse": sparse_model, "sparse2": sparse2_model,
         "copies": copies_model}[which.removesuffix("_train_random")]
    m.train(which.endswith("train_random"))
    try:
        atoms = _rattled("CH3CH2OH", 1)
        for _ in range(2):
            R = o3.rand_matrix(dtype=torch.float64) * (-1.0 if improper else 1.0)
            rotated = atoms.copy()
            rotated.positions = atoms.positions @ R.numpy().T + np.array([0.3, -1.0, 2.0])
            H = _full(_predict(m, [_graph(atoms)]).detach(), atoms.numbers)
            H_rot = _full(_predict(m, [_graph(rotated)]).detach(), atoms.numbers)
            U = ao_rotation(BASIS, atoms.numbers, R)
            assert H.abs().max() > 1e-3
            assert (U @ H @ U.T - H_rot).abs().max() <= 1e-8
    finally:
        m.eval()


def test_symmetric_and_padded(model):
    atoms = _rattled("CH3CH2OH", 2)
    blocks = _predict(model, [_graph(atoms)]).detach()
    H = _full(blocks, atoms.numbers)
    torch.testing.assert_close(H, H.T, rtol=0, atol=1e-14)
    n = len(atoms)
    for a, z in enumerate(atoms.numbers):
        k = ao_count(BASIS, int(z))
        assert not blocks[a * n: (a + 1) * n, k:, :].any()  # rows past the atom's AOs
        assert not blocks[a::n, :, k:].any()  # columns past the atom's AOs
    assert blocks.abs().max() > 1e-3


@pytest.mark.parametrize("fixture", ["sparse_model", "sparse2_model", "copies_model"])
def test_permutation(fixture, request):
    m = request.getfixturevalue(fixture)
    atoms = _rattled("CH3CH2OH", 3)
    perm = np.random.default_rng(0).permutation(len(atoms))
    H = _full(_predict(m, [_graph(atoms)]).detach(), atoms.numbers)
    Hp = _full(_predict(m, [_graph(atoms[perm])]).detach(), atoms.numbers[perm])
    naos = [ao_count(BASIS, int(z)) for z in atoms.numbers]
    starts = np.concatenate([[0], np.cumsum(naos)])
    ao_perm = np.concatenate([np.arange(starts[p], starts[p + 1]) for p in perm])
    torch.testing.assert_close(Hp, H[ao_perm][:, ao_perm], rtol=0, atol=1e-12)


@pytest.mark.parametrize("fixture", ["model", "sparse_model", "sparse2_model", "copies_model"])
def test_batch_equals_single(fixture, request):
    m = request.getfixturevalue(fixture)
    mols = [_rattled("H2O", 4), _rattled("CH3CH2OH", 5), _rattled("H2O", 6)]
    batch = _predict(m, [_graph(a) for a in mols]).detach()
    off = 0
    for a in mols:
        single = _predict(m, [_graph(a)]).detach()
        torch.testing.assert_close(batch[off: off + len(a) ** 2], single, rtol=0, atol=1e-12)
        off += len(a) ** 2
    assert off == batch.shape[0]


def test_sparsity_zero_equals_dense_and_open_gates():
    """A sparse model whose gates keep every pair and path with weight 1 is the dense model."""
    torch.manual_seed(5)
    dense = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, sparsity=0.0).double().eval()
    sparse = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, sparsity=0.7).double().eval()
    sparse_keys = ("pair_gate.", "pair_tp.gate.")
    assert not any(k.startswith(sparse_keys) for k, _ in dense.named_parameters())
    missing, unexpected = sparse.load_state_dict(dense.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(sparse_keys) for k in missing)
    atoms = [_graph(_rattled("CH3CH2OH", 7))]
    assert (_predict(sparse, atoms) - _predict(dense, atoms)).abs().max() > 1e-6  # gates do prune
    with torch.no_grad():  # open the gates: every pair with gate 1, every path with weight 1
        sparse.pair_gate.sparsity = 0.0
        sparse.pair_gate.score.biases[-1].fill_(100.0)
        sparse.pair_tp.gate.k = sparse.pair_tp.gate.n_paths
    torch.testing.assert_close(_predict(sparse, atoms), _predict(dense, atoms), rtol=0, atol=1e-12)


def test_two_pair_layers_gate_only_the_second_product():
    """``pair_layers=2``: the pair gate changes the output only through the second product (every
    pair runs the first one)."""
    torch.manual_seed(6)
    dense = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, pair_layers=2).double().eval()
    sparse = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, pair_sparsity=0.7,
                   pair_layers=2).double().eval()
    missing, unexpected = sparse.load_state_dict(dense.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("pair_gate.") for k in missing)
    atoms = [_graph(_rattled("CH3CH2OH", 8))]
    base = _predict(dense, atoms)
    pruned = _predict(sparse, atoms)
    assert (pruned - base).abs().max() > 1e-6
    with torch.no_grad():  # zero the second product: the gate then has nothing to prune
        for lin in (dense.pair_e, sparse.pair_e):
            for w in lin.parameters():
                w.zero_()
    torch.testing.assert_close(_predict(sparse, atoms), _predict(dense, atoms), rtol=0, atol=1e-12)
    with pytest.raises(EqtoolError, match="pair_layers"):
        QHNet(atomic_numbers=(1, 6, 8), pair_layers=3)


def test_pair_tp_copies():
    """``pair_tp_copies=k``: k^2 times the CG paths; at k = 1 the plain product. Copy ``(a, b)`` of a path
    is the channel-wise product of channel block ``a`` of ``x_i`` with block ``b`` of ``x_j`` and lands
    in channel block ``a`` of the output."""
    from eqtool.models.files import model_from_payload
    from eqtool.models.hamiltonian.expansion import expansion_irreps
    from eqtool.nn import NodeTP

    one = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1)
    two = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, pair_tp_copies=2)
    assert two.pair_tp.n_paths == 4 * one.pair_tp.n_paths == 76
    assert "pair_tp_copies" not in one.config and two.config["pair_tp_copies"] == 2
    again = model_from_payload({"config": two.config, "state_dict": two.state_dict()})
    assert again.pair_tp.copies == 2
    torch.manual_seed(0)
    x, y = torch.randn(5, 9, 8, dtype=torch.float64), torch.randn(5, 9, 8, dtype=torch.float64)
    out = two.pair_tp.double()(x, y)  # [5, D_tp, 8]: channel blocks = copies of x
    plain = NodeTP(one.hidden.irs, one.hidden.irs, expansion_irreps()).double()  # one.pair_tp's product
    D = plain(x, y).shape[1]
    assert out.shape == (5, 2 * D, 8)
    n = len(one.hidden.irs)
    paths = [(i1, i2, ir) for i1, i2, ir in two.pair_tp.tp.paths if i1 < n]  # copy 0 of x: the row order
    starts = np.cumsum([0] + [ir.dim for *_, ir in paths])[:-1]
    rows_of = {b: [r for (_, i2, ir), r0 in zip(paths, starts, strict=True)
                   if i2 // n == b for r in range(r0, r0 + ir.dim)] for b in range(2)}
    for a in range(2):
        for b in range(2):  # channel block a, paths from y's copy b: x block a times y block b
            ref = plain(x[..., 4 * a: 4 * a + 4], y[..., 4 * b: 4 * b + 4])
            torch.testing.assert_close(out[:, rows_of[b], 4 * a: 4 * a + 4], ref, rtol=0, atol=1e-12)
    with pytest.raises(EqtoolError, match="pair_tp_copies"):
        QHNet(channels=8, pair_tp_copies=3)


def test_pair_and_tp_sparsity_apart():
    """``pair_sparsity``/``tp_sparsity`` switch one gate on alone; the config round-trips."""
    from eqtool.models.files import model_from_payload

    pair_only = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, pair_sparsity=0.7)
    tp_only = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, tp_sparsity=0.7)
    assert pair_only.pair_gate.sparsity == 0.7 and pair_only.pair_tp.gate.weight is None
    assert tp_only.pair_gate.sparsity == 0.0 and tp_only.pair_tp.gate.sparsity == 0.7
    both = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, sparsity=0.7, tp_sparsity=0.0)
    assert both.pair_gate.sparsity == 0.7 and both.pair_tp.gate.weight is None
    again = model_from_payload({"config": pair_only.config, "state_dict": pair_only.state_dict()})
    assert again.config["pair_sparsity"] == 0.7 and again.config["tp_sparsity"] == 0.0
    with pytest.raises(EqtoolError, match="tp_sparsity"):
        QHNet(tp_sparsity=-0.1)
    # two pair layers: the second product's TP gate apart (default: as the first's)
    first_only = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, sparsity=0.7, pair_layers=2,
                       tp2_sparsity=0.0)
    assert first_only.pair_tp.gate.sparsity == 0.7 and first_only.pair_tp2.gate.weight is None
    same = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, sparsity=0.7, pair_layers=2)
    assert same.pair_tp2.gate.sparsity == 0.7
    again = model_from_payload({"config": first_only.config, "state_dict": first_only.state_dict()})
    assert again.config["tp2_sparsity"] == 0.0 and again.pair_tp2.gate.weight is None
    with pytest.raises(EqtoolError, match="tp2_sparsity"):
        QHNet(tp2_sparsity=1.0)


def test_sparse_model_prunes_pairs(sparse_model):
    atoms = _rattled("CH3CH2OH", 8)
    batch = collate([_graph(atoms)], dtype=torch.float64)
    from eqtool.models.hamiltonian.qhnet import all_pairs

    pi, pj, _ = all_pairs(batch[K.N_ATOMS])
    off = pi != pj
    h, _, _, radial = sparse_model.backbone(batch, pi[off], pj[off])
    keep, w = sparse_model._kept_pairs(h, pi[off], pj[off], radial, batch[K.BATCH])
    n_unordered = len(atoms) * (len(atoms) - 1) // 2
    assert len(keep) == 2 * int(np.ceil(0.3 * n_unordered))  # both orders of each kept pair
    assert len(set(keep.tolist())) == len(keep) and bool(((w > 0) & (w < 1)).all())


# ---------------------------------------------------------------------------- on-site environment
def test_onsite_blocks_see_a_tetrahedral_environment():
    """An sp3 carbon's on-site ``p``-``d`` coupling and ``d`` splitting come from the ``l = 3, 4``
    harmonics of its neighbours; ``l <= 2`` features (and their products) vanish at exact Td symmetry.
    Without ``onsite_env`` the model could not learn them: the shipped model's ethanol on-site C
    error stayed ~3000 µHa even when over-fitting a single conformer."""
    atoms = molecule("CH4")  # exact Td, C is atom 0
    assert atoms.numbers[0] == 6
    mol = _pyscf_mol(atoms.numbers, atoms.positions)
    hcore = mol.intor("int1e_kin") + mol.intor("int1e_nuc")  # the reference has both couplings
    assert np.abs(hcore[3:9, 9:14]).max() > 1e-2
    assert np.ptp(np.linalg.eigvalsh(hcore[9:14, 9:14])) > 1e-2
    for onsite_env in (True, False):
        torch.manual_seed(0)
        m = QHNet(atomic_numbers=(1, 6), channels=8, num_layers=2, onsite_env=onsite_env).double().eval()
        C = _predict(m, [_graph(atoms)])[0].detach()  # on-site block of the carbon, [14, 14]
        pd, d_split = C[3:9, 9:14].abs().max(), np.ptp(np.linalg.eigvalsh(C[9:14, 9:14].numpy()))
        if onsite_env:
            assert pd > 1e-3 and d_split > 1e-3, (pd, d_split)
        else:  # the limitation the term removes
            assert pd < 1e-10 and d_split < 1e-10, (pd, d_split)


def test_model_file_without_onsite_env_loads_unchanged():
    old = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=2, onsite_env=False).double().eval()
    state = old.state_dict()
    assert not any(k.startswith("env_") for k in state)
    new = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=2).double().eval()
    new.load_state_dict(state, strict=True)  # the env term is added with zero weights
    atoms = [_graph(_rattled("CH3CH2OH", 5)), _graph(_rattled("H2O", 5))]
    torch.testing.assert_close(_predict(new, atoms), _predict(old, atoms), rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------- files and errors
@pytest.mark.parametrize("fixture", ["sparse_model", "sparse2_model"])
def test_config_roundtrip_and_model_file(tmp_path, fixture, request):
    from eqtool.models.files import load_model, save_model
    from eqtool.nn.sparse_gate import SparsityScheduler

    sparse_model = request.getfixturevalue(fixture)
    SparsityScheduler(0, 0).apply(sparse_model, 0)  # fixed phase: the exported inference model
    rebuilt = build_model(**sparse_model.config)
    assert set(rebuilt.state_dict()) == set(sparse_model.state_dict())
    path = save_model(sparse_model, tmp_path / "h.pt")
    loaded = load_model(path, dtype=torch.float64)
    atoms = [_graph(_rattled("H2O", 9)), _graph(_rattled("CH3CH2OH", 9))]
    torch.testing.assert_close(_predict(loaded, atoms), _predict(sparse_model, atoms), rtol=0, atol=0)
    assert loaded.pair_tp.gate.phase == "fixed"
    assert loaded.config["pair_layers"] == sparse_model.pair_layers


def test_bad_input():
    with pytest.raises(EqtoolError, match="no def2-svp basis"):
        QHNet(atomic_numbers=(1, 17))
    with pytest.raises(EqtoolError, match="basis 'sto-3g' is not supported"):
        QHNet(basis="sto-3g")
    with pytest.raises(EqtoolError, match="sparsity"):
        QHNet(sparsity=1.0)
    with pytest.raises(EqtoolError, match="pair_tp_channels"):
        QHNet(channels=8, pair_tp_channels=16)
    m = QHNet(atomic_numbers=(1, 8), channels=4, num_layers=1)
    with pytest.raises(EqtoolError, match="element.* C not supported"):
        m(collate([_graph(molecule("CH4"))]))


# ---------------------------------------------------------------------------- training
def _write_dataset(path, n_water=6, n_ethanol=4, basis=BASIS):
    """hcore (kinetic + nuclear attraction) as a stand-in Fock matrix: exact, cheap, equivariant."""
    import scipy.linalg

    from eqtool.dft.h5 import hamiltonian_graph, write_hamiltonian_h5

    graphs = []
    for name, formula, n in (("water", "H2O", n_water), ("ethanol", "CH3CH2OH", n_ethanol)):
        for k in range(n):
            atoms = _rattled(formula, 100 + k, scale=0.05)
            mol = _pyscf_mol(atoms.numbers, atoms.positions)
            H = mol.intor("int1e_kin") + mol.intor("int1e_nuc")
            S = mol.intor("int1e_ovlp")
            eps = scipy.linalg.eigh(H, S, eigvals_only=True)
            graphs.append(hamiltonian_graph(atoms.numbers, atoms.positions, H, S, eps, mol.nelectron // 2,
                                            72, info={"name": name}, source=f"{name}@{k}"))
    write_hamiltonian_h5(path, graphs, source="test", level_of_theory="hcore", info_keys=("name",),
                         attrs={"basis": basis} if basis != BASIS else None)


def _recipe(tmp_path, data, **trainer):
    from eqtool.config.schema import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig
    from eqtool.models.hamiltonian.config import HamiltonianLossConfig

    return RunConfig(
        data=DataConfig(path=str(data), batch_size=4, val_fraction=0.2, test_fraction=0.2),
        model=ModelConfig(name="qhnet", kwargs={
            "atomic_numbers": [1, 6, 8], "channels": 8, "num_layers": 1, "sparsity": 0.7,
            "tp_random_steps": 1, "tp_adaptive_steps": 1}),
        task="hamiltonian", loss=HamiltonianLossConfig(), optim=OptimConfig(lr=5e-3, scheduler="none"),
        trainer=TrainerConfig(**{"max_epochs": 2, "dtype": "float64", "accelerator": "cpu", "devices": 1,
                                 "progress_bar": False, **trainer}),
        run_dir=str(tmp_path / "run"))


def test_train_export_resume(tmp_path):
    from eqtool.models.files import load_model
    from eqtool.tasks.hamiltonian import train_hamiltonian
    from eqtool.train import train

    data = tmp_path / "h.h5"
    _write_dataset(data)
    cfg = _recipe(tmp_path, data)
    run = train(cfg, log=lambda *a: None)  # dispatches to train_hamiltonian
    for name in ("config.yaml", "model_config.json", "checkpoints/last.ckpt", "model.pt",
                 "test_metrics.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert set(metrics["molecules"]) >= {"all"} and metrics["split"] == "test"
    assert all(np.isfinite(v["h_mae"]) for v in metrics["molecules"].values())
    assert "psi" in metrics["molecules"]["all"] and metrics["units"]["h_mae"] == "µHa"
    model = load_model(run / "model.pt")
    assert model.pair_tp.gate.phase == "fixed"  # 2 epochs x 2 steps passed both schedule phases
    assert float(model.scale) > 0 and model.diag_mean.abs().sum() > 0  # the fitted reference
    resumed = _recipe(tmp_path, data, max_epochs=3)
    train_hamiltonian(resumed, resume=True, log=lambda *a: None)
    hist = [json.loads(x) for x in (run / "fit_history.jsonl").read_text().splitlines()]
    assert hist[-1]["epoch"] >= 2 and sum(h["event"] == "start" for h in hist) == 2


def test_dataset_basis_mismatch(tmp_path):
    from eqtool.tasks.hamiltonian import HamiltonianDataModule

    data = tmp_path / "h.h5"
    _write_dataset(data, n_water=3, n_ethanol=0, basis="sto-3g")
    cfg = _recipe(tmp_path, data).data
    with pytest.raises(EqtoolError, match="basis 'sto-3g' differs from the model's 'def2-svp'"):
        HamiltonianDataModule(cfg, BASIS).setup()


def test_loss_ignores_padding():
    from eqtool.models.hamiltonian.config import HamiltonianLossConfig
    from eqtool.tasks.hamiltonian import ao_mask, hamiltonian_loss

    m = QHNet(atomic_numbers=(1, 8), channels=4, num_layers=1).double()
    batch = collate([_graph(molecule("H2O"))], dtype=torch.float64)
    mask, on_site = ao_mask(m, batch)
    assert int(mask.sum()) == 24 ** 2 and on_site.tolist() == [True, False, False, False, True, False,
                                                                False, False, True]
    pred = torch.zeros(9, 14, 14, dtype=torch.float64)
    target = pred.clone()
    target[~mask] = 5.0  # padding differences do not count
    target[0, 0, 0] = 24.0**2 * 1e-3
    loss, mae = hamiltonian_loss(pred, target, mask, HamiltonianLossConfig(mae=1.0, mse=0.0))
    assert abs(float(mae) - 1e-3) < 1e-15 and abs(float(loss) - 1e-3) < 1e-15


def test_orbital_errors_are_the_errors_orbitals_see():
    """S^-1/2 ΔH S^-1/2 and occupied orbital energies against scipy, two molecules in one batch."""
    import scipy.linalg

    from eqtool.dft.h5 import hamiltonian_graph
    from eqtool.tasks.hamiltonian import orbital_errors

    rng = np.random.default_rng(0)
    refs, preds, mats = [], [], []
    for formula, seed in (("H2O", 1), ("CH3CH2OH", 2)):
        atoms = _rattled(formula, seed, scale=0.05)
        mol = _pyscf_mol(atoms.numbers, atoms.positions)
        H, S = mol.intor("int1e_kin") + mol.intor("int1e_nuc"), mol.intor("int1e_ovlp")
        dH = rng.normal(scale=1e-3, size=H.shape)
        dH = dH + dH.T
        n_occ = mol.nelectron // 2
        for out, h in ((refs, H), (preds, H + dH)):
            out.append(hamiltonian_graph(atoms.numbers, atoms.positions, h, S, np.zeros(72), n_occ, 72))
        mats.append((H, S, dH, n_occ))
    keys = (K.HAMILTONIAN, K.OVERLAP, "n_occ")
    ref, pred = (collate(g, dtype=torch.float64, label_keys=keys) for g in (refs, preds))
    args = (ref[K.OVERLAP], ref[K.ATOMIC_NUMBERS], ref[K.N_ATOMS], ref["n_occ"])
    same = orbital_errors(ref[K.HAMILTONIAN], ref[K.HAMILTONIAN], *args)
    assert float(same["orth"]) == 0.0 and float(same["occ"]) == 0.0
    p = pred[K.HAMILTONIAN].clone().requires_grad_()
    got = orbital_errors(p, ref[K.HAMILTONIAN], *args)
    want_orth, want_occ = [], []
    for H, S, dH, n_occ in mats:
        X = scipy.linalg.fractional_matrix_power(S, -0.5).real
        want_orth.append(np.abs(X @ dH @ X).mean())
        eps = [scipy.linalg.eigh(h, S, eigvals_only=True) for h in (H + dH, H)]
        want_occ.append(np.abs(eps[0] - eps[1])[:n_occ].mean())
        # eigenvalue shifts are bounded by the orthogonal-basis error (Weyl), not by the AO-basis one
        assert np.abs(eps[0] - eps[1]).max() <= np.linalg.norm(X @ dH @ X, 2) + 1e-12
    assert abs(float(got["orth"].detach()) - np.mean(want_orth)) < 1e-10
    assert abs(float(got["occ"].detach()) - np.mean(want_occ)) < 1e-10
    (got["orth"] + got["occ"]).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_train_with_orbital_losses_logs_them(tmp_path):
    import csv

    from eqtool.models.hamiltonian.config import HamiltonianLossConfig
    from eqtool.train import train

    data = tmp_path / "h.h5"
    _write_dataset(data, n_water=4, n_ethanol=2)
    cfg = _recipe(tmp_path, data, max_epochs=1)
    cfg = dataclasses.replace(cfg, loss=HamiltonianLossConfig(orth=0.5, occ=0.5))
    run = train(cfg, log=lambda *a: None)
    rows = list(csv.DictReader(open(next((run / "logs").rglob("metrics.csv")))))
    for key in ("val/h_mae_orth", "val/h_mae_occ"):
        values = [float(r[key]) for r in rows if r.get(key)]
        assert values and all(np.isfinite(values)) and min(values) > 0, key


def test_init_from_a_model_file_fine_tunes(tmp_path):
    """model.init_from starts from the file's weights (lr 1e-30: the export equals the file); a recipe
    whose kwargs disagree with the file, or another model name, is refused naming the file."""
    from eqtool.config.schema import ModelConfig, OptimConfig
    from eqtool.models.files import read_model_file
    from eqtool.train import train

    data = tmp_path / "h.h5"
    _write_dataset(data, n_water=4, n_ethanol=2)
    first = train(_recipe(tmp_path, data, max_epochs=1), log=lambda *a: None)
    base = _recipe(tmp_path, data, max_epochs=1)
    kwargs = dict(base.model.kwargs)
    file = str(first / "model.pt")
    tuned = dataclasses.replace(base, run_dir=str(tmp_path / "tuned"),
                                optim=OptimConfig(lr=1e-30, min_lr=0.0, scheduler="none"),
                                model=ModelConfig(name="qhnet", kwargs=kwargs, init_from=file))
    run = train(tuned, log=lambda *a: None)
    a = read_model_file(first / "model.pt")["state_dict"]
    b = read_model_file(run / "model.pt")["state_dict"]
    assert a.keys() == b.keys()
    floats = [k for k in a if a[k].is_floating_point() and a[k].numel()]
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in floats) < 1e-20

    for model, match in ((ModelConfig(name="qhnet", kwargs={**kwargs, "channels": 16}, init_from=file),
                          "model.kwargs channels differ"),
                         (ModelConfig(name="qhnet", kwargs=kwargs, init_from="cu-emt"), "is a 'mace' model")):
        bad = dataclasses.replace(base, run_dir=str(tmp_path / "bad"), model=model)
        with pytest.raises(EqtoolError, match=match):
            train(bad, log=lambda *a: None)


# ---------------------------------------------------------------------------- Δ-learning baseline
def test_promolecule_baseline_is_close_to_the_b3lyp_fock_matrix():
    """F0 = hcore + J[D_minao] - 0.25 K[D_minao] is within a few 10 mHa of the converged B3LYP Fock
    matrix of the committed data; the core Hamiltonian alone is ~30x farther (a wrong sign or a missing
    J would fail this)."""
    from eqtool.dft.baseline import baseline_fock
    from eqtool.dft.basis import matrix_from_blocks
    from eqtool.io.hdf5 import H5Dataset

    for g in list(H5Dataset(TINY))[:3]:
        F = matrix_from_blocks(np.asarray(g.labels[K.HAMILTONIAN]), g.atomic_numbers)
        F0 = baseline_fock(g.atomic_numbers, g.positions)
        hcore = _pyscf_mol(g.atomic_numbers, g.positions)
        hcore = hcore.intor("int1e_kin") + hcore.intor("int1e_nuc")
        assert np.abs(F - F0).mean() < 0.04, g.source  # Hartree
        assert np.abs(F - F0).mean() < 0.1 * np.abs(F - hcore).mean(), g.source


@pytest.mark.parametrize("improper", [False, True])
def test_baseline_model_is_equivariant_and_adds_the_baseline(improper):
    """The batch's F0 comes from PySCF at each geometry, so this checks F0's covariance too."""
    from eqtool.dft.baseline import baseline_fock
    from eqtool.models.hamiltonian.predict import model_batch, predict_blocks

    torch.manual_seed(3)
    m = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1, baseline="promolecule").double().eval()
    plain = QHNet(atomic_numbers=(1, 6, 8), channels=8, num_layers=1).double().eval()
    plain.load_state_dict(m.state_dict())
    atoms = _rattled("CH3CH2OH", 4)
    R = o3.rand_matrix(dtype=torch.float64) * (-1.0 if improper else 1.0)
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ R.numpy().T + np.array([1.0, 0.5, -2.0])
    with torch.no_grad():
        H = _full(m(model_batch(m, [_graph(atoms)]))[K.HAMILTONIAN], atoms.numbers)
        H_rot = _full(m(model_batch(m, [_graph(rotated)]))[K.HAMILTONIAN], atoms.numbers)
        net = _full(plain(collate([_graph(atoms)], dtype=torch.float64))[K.HAMILTONIAN], atoms.numbers)
    U = ao_rotation(BASIS, atoms.numbers, R)
    assert (U @ H @ U.T - H_rot).abs().max() <= 1e-8
    F0 = torch.from_numpy(baseline_fock(atoms.numbers, atoms.positions))
    assert (H - net - F0).abs().max() <= 1e-10
    assert np.allclose(predict_blocks(m, [_graph(atoms)])[0], m(model_batch(m, [_graph(atoms)]))[
        K.HAMILTONIAN].detach().numpy(), atol=1e-12)


def test_baseline_bad_input():
    with pytest.raises(EqtoolError, match="unknown Hamiltonian baseline 'huckel'"):
        QHNet(baseline="huckel")
    m = QHNet(atomic_numbers=(1, 8), channels=4, num_layers=1, baseline="promolecule")
    with pytest.raises(EqtoolError, match="no 'hamiltonian_baseline' blocks"):
        m(collate([_graph(molecule("H2O"))], dtype=torch.float32))
    assert QHNet(baseline="none").baseline is None


def test_reference_is_fitted_on_the_residual():
    """With a baseline the mean on-site blocks and the scale are those of H - F0: here F0 = H, so the
    mean is zero (and the scale falls back to 1); without it they are H's."""
    from eqtool.tasks.hamiltonian import fit_reference

    graphs = []
    for k in range(2):
        g = _graph(_rattled("H2O", 20 + k))
        H = np.random.default_rng(k).normal(size=(9, MAX_AO, MAX_AO))
        graphs.append(dataclasses.replace(g, labels={K.HAMILTONIAN: H, K.HAMILTONIAN_BASELINE: H}))
    with_base = QHNet(atomic_numbers=(1, 8), channels=4, num_layers=1, baseline="promolecule")
    assert fit_reference(with_base, graphs)["scale"] == 1.0 and with_base.diag_mean.abs().max() == 0
    without = QHNet(atomic_numbers=(1, 8), channels=4, num_layers=1)
    assert fit_reference(without, graphs)["scale"] > 0.5 and without.diag_mean.abs().max() > 0.1


def test_train_with_a_baseline(tmp_path):
    """A Δ-learning recipe trains, exports a model whose config names the baseline, and its test
    metrics are what the exported model gives on the test split (baseline computed again)."""
    from eqtool.data.datamodule import open_splits
    from eqtool.models.files import load_model
    from eqtool.tasks.hamiltonian import evaluate_hamiltonian
    from eqtool.train import train

    data = tmp_path / "h.h5"
    _write_dataset(data, n_water=4, n_ethanol=2)
    cfg = _recipe(tmp_path, data, max_epochs=1)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, kwargs={**cfg.model.kwargs, "baseline": "promolecule"}))
    logs = []
    run = train(cfg, log=logs.append)
    assert any("baseline 'promolecule' for 6 molecules" in str(x) for x in logs), logs
    model = load_model(run / "model.pt", dtype=torch.float64)
    assert model.baseline == "promolecule"
    metrics = json.loads((run / "test_metrics.json").read_text())
    _, parts = open_splits(cfg.data)
    again = evaluate_hamiltonian(model, [parts["test"][k] for k in range(len(parts["test"]))])
    assert again["all"]["h_mae"] == pytest.approx(metrics["molecules"]["all"]["h_mae"], rel=1e-6)
    # fine-tuning from the file (no kwargs in the recipe) computes the file's baseline for the data
    from eqtool.config.schema import ModelConfig

    tuned = dataclasses.replace(cfg, run_dir=str(tmp_path / "tuned"),
                                model=ModelConfig(name="qhnet", init_from=str(run / "model.pt")))
    assert load_model(train(tuned, log=lambda *a: None) / "model.pt").baseline == "promolecule"
    assert np.isfinite(metrics["molecules"]["all"]["h_mae"])


# ---------------------------------------------------------------------------- the shipped model
# name -> H MAE bound (µHa) on the 12 committed molecules: the Δ-learning model's baseline alone is
# ~2·10^4 µHa off, an untrained direct model ~10^5
SHIPPED = {"water-ethanol-svp": 500.0, "water-ethanol-svp-direct": 5000.0}
TINY = Path(__file__).resolve().parents[1] / "data" / "hamiltonian_tiny.h5"
FILES = Path(__file__).resolve().parents[1] / "eqtool/models/files"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_is_equivariant_and_fits_the_data(name):
    from eqtool.io.hdf5 import H5Dataset
    from eqtool.models.files import load_model
    from eqtool.models.hamiltonian.predict import model_batch
    from eqtool.tasks.hamiltonian import evaluate_hamiltonian

    model = load_model(name, dtype=torch.float64)
    assert model.baseline == ("promolecule" if name == "water-ethanol-svp" else None)
    assert model.basis == BASIS and model.atomic_numbers.tolist() == [1, 6, 8]
    atoms = _rattled("CH3CH2OH", 11)
    R = o3.rand_matrix(dtype=torch.float64)
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ R.numpy().T
    with torch.no_grad():  # model_batch adds the PySCF baseline F0 of a Δ-learning model
        H, H_rot = (_full(model(model_batch(model, [_graph(a)]))[K.HAMILTONIAN], atoms.numbers)
                    for a in (atoms, rotated))
    U = ao_rotation(BASIS, atoms.numbers, R)
    assert (U @ H @ U.T - H_rot).abs().max() <= 1e-8
    # B3LYP/def2-SVP Fock matrices of the committed 12 molecules (MD conformers of the same data)
    metrics = evaluate_hamiltonian(model, H5Dataset(TINY), orbital_metrics=False)
    assert metrics["all"]["n_systems"] == 12
    assert metrics["all"]["h_mae"] < SHIPPED[name], metrics


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_metrics_file(name):
    m = json.loads((FILES / f"{name}.metrics.json").read_text(encoding="utf-8"))
    assert m["model"] == name
    for mol in ("water", "ethanol"):
        assert m["molecules"][mol]["n_systems"] > 0
        assert 0 < m["molecules"][mol]["h_mae"] < 1e5
    assert m["n_train"] > 0 and m["units"]["h_mae"] == "µHa"
