"""SPHNet sparse gates (eqtool/nn/sparse_gate.py): selection, phases, equivariance, sparsity 0 == dense."""

import math

import pytest
import torch
from e3nn import o3

from eqtool.nn import NodeTP, UniformIrreps
from eqtool.nn.sparse_gate import (
    SparseNodeTP,
    SparsePairGate,
    SparseTPGate,
    SparsityScheduler,
    n_keep,
)

IRS = [o3.Irrep(ir) for ir in ("0e", "1o", "2e")]
TARGET = [o3.Irrep(ir) for ir in ("0e", "1o", "1e", "2e", "2o", "3o", "3e", "4e")]


def test_n_keep():
    assert n_keep(10, 0.7) == 3
    assert n_keep(10, 0.0) == 10
    assert n_keep(2, 0.7) == 1  # at least one
    assert n_keep(0, 0.7) == 0
    assert n_keep(torch.tensor([10, 2, 0, 7]), 0.7).tolist() == [3, 1, 0, 3]


def test_pair_gate_off_is_identity():
    gate = SparsePairGate(5, 0.0)
    assert not list(gate.parameters())
    keep, w = gate(torch.randn(7, 5), torch.tensor([0, 0, 0, 1, 1, 1, 1]))
    assert keep.tolist() == list(range(7))
    assert torch.equal(w, torch.ones(7))


def test_pair_gate_keeps_top_pairs_per_system():
    torch.manual_seed(0)
    gate = SparsePairGate(4, 0.7, hidden=8)
    desc = torch.randn(23, 4, requires_grad=True)
    system = torch.tensor([0] * 10 + [1] * 3 + [2] * 10)
    keep, w = gate(desc, system)
    score = torch.sigmoid(gate.score(desc).squeeze(-1)).detach()
    for b, n in ((0, 10), (1, 3), (2, 10)):
        idx = (system == b).nonzero().squeeze(-1)
        kept_b = sorted(k for k in keep.tolist() if system[k] == b)
        assert len(kept_b) == math.ceil(0.3 * n)
        expected = idx[torch.argsort(score[idx], descending=True)[: len(kept_b)]]
        assert kept_b == sorted(expected.tolist())
    assert torch.allclose(w, score[keep])  # kept pairs are weighted by their gate
    w.sum().backward()  # the gate is trainable through the weights
    assert gate.score.weights[0].grad is not None and gate.score.weights[0].grad.abs().sum() > 0


def test_tp_gate_phases():
    torch.manual_seed(0)
    gate = SparseTPGate(20, 0.7)
    assert gate.k == 6 and gate.phase == "random"
    gate.train()
    draws = {tuple(gate()[0].tolist()) for _ in range(10)}
    assert all(len(d) == 6 for d in draws)
    assert len(draws) > 1  # random subsets change from step to step
    with torch.no_grad():
        gate.weight.copy_(torch.linspace(0.1, 2.0, 20))
    gate.eval()  # evaluation before the fixed phase: the top paths by |weight|
    assert gate()[0].tolist() == list(range(14, 20))
    gate.train()
    gate.set_phase("adaptive")
    assert gate()[0].tolist() == list(range(14, 20))
    with torch.no_grad():
        gate.weight[0] = -5.0  # adaptive: re-selected every step, by |weight|
    assert gate()[0].tolist() == [0, *range(15, 20)]
    gate.set_phase("fixed")
    frozen = gate()[0].tolist()
    assert frozen == [0, *range(15, 20)] and int(gate.mask.sum()) == 6
    with torch.no_grad():
        gate.weight.copy_(-gate.weight.abs().flip(0))  # weights change; the fixed selection does not
    assert gate()[0].tolist() == frozen
    gate.eval()
    assert gate()[0].tolist() == frozen


def test_tp_gate_keeps_a_path_of_every_required_group():
    """Grouped paths: each group keeps its best path in every phase, the rest go by |weight|."""
    torch.manual_seed(0)
    groups = [-1] * 10 + [0, 0, 1] + [-1] * 7  # paths 10, 11 (group 0) and 12 (group 1) have low weights
    gate = SparseTPGate(20, 0.7, groups)
    gate.train()
    for _ in range(20):  # random phase: random draws, never without groups 0 and 1
        active = gate()[0].tolist()
        assert len(active) == 6 and 12 in active and {10, 11} & set(active)
    with torch.no_grad():
        gate.weight.copy_(torch.linspace(2.0, 0.1, 20))  # paths 0-5 would be the plain top 6
        gate.weight[10], gate.weight[11] = 0.2, 0.5  # 11: the better path of group 0
    gate.set_phase("fixed")
    assert gate()[0].tolist() == [0, 1, 2, 3, 11, 12]
    with pytest.raises(ValueError, match="required groups"):
        SparseTPGate(10, 0.9, [0, 1] + [-1] * 8)


def test_sparse_node_tp_required_irreps_survive_pruning():
    tp = SparseNodeTP(IRS, IRS, TARGET, 0.7, required=["1e"])
    with torch.no_grad():
        tp.gate.weight.copy_(torch.arange(tp.n_paths, dtype=torch.float32) + 1)
        for p, ir in enumerate(tp.irs_out):  # every 1e path at the bottom of the ranking
            if str(ir) == "1e":
                tp.gate.weight[p] = 1e-3
    tp.gate.set_phase("fixed")
    assert any(str(tp.irs_out[p]) == "1e" for p in tp.gate()[0].tolist())
    with pytest.raises(ValueError, match="no path"):
        SparseNodeTP(IRS, IRS, TARGET, 0.7, required=["4o"])


def test_tp_gate_state_is_saved():
    g1 = SparseTPGate(10, 0.5)
    with torch.no_grad():
        g1.weight.copy_(torch.arange(10.0))
    g1.set_phase("fixed")
    g2 = SparseTPGate(10, 0.5)
    g2.load_state_dict(g1.state_dict())
    assert g2.phase == "fixed" and g2()[0].tolist() == [5, 6, 7, 8, 9]


def test_scheduler():
    s = SparsityScheduler(random_steps=5, adaptive_steps=3)
    assert [s.phase(t) for t in (0, 4, 5, 7, 8, 100)] == ["random"] * 2 + ["adaptive"] * 2 + ["fixed"] * 2
    model = torch.nn.ModuleList([SparseNodeTP(IRS, IRS, TARGET, 0.7), SparseNodeTP(IRS, IRS, TARGET, 0.0)])
    assert s.apply(model, 6) == "adaptive"
    assert model[0].gate.phase == "adaptive"
    s.apply(model, 9)
    assert model[0].gate.phase == "fixed"
    s.apply(model, 0)  # never backwards
    assert model[0].gate.phase == "fixed"


def _xy(n=5, c=4, dtype=torch.float64):
    d = sum(ir.dim for ir in IRS)
    return torch.randn(n, d, c, dtype=dtype), torch.randn(n, d, c, dtype=dtype)


def test_sparse_tp_with_sparsity_zero_equals_dense():
    torch.manual_seed(1)
    sparse = SparseNodeTP(IRS, IRS, TARGET, 0.0)
    dense = NodeTP(IRS, IRS, TARGET)
    x, y = _xy()
    assert not list(sparse.parameters())
    assert torch.equal(sparse(x, y), dense(x, y))


@pytest.mark.parametrize("phase", ["random", "adaptive", "fixed"])
def test_sparse_tp_matches_masked_dense_and_prunes_work(phase):
    torch.manual_seed(2)
    tp = SparseNodeTP(IRS, IRS, TARGET, 0.7).double()
    with torch.no_grad():
        tp.gate.weight.copy_(torch.randn(tp.n_paths, dtype=torch.float64))
    tp.gate.set_phase(phase)
    x, y = _xy()
    torch.manual_seed(3)
    out = tp(x, y)
    torch.manual_seed(3)
    active, weight = tp.gate()
    full = tp.tp(x, y)  # the dense product
    on = torch.zeros(tp.n_paths, dtype=torch.bool)
    on[active] = True
    scale = (weight * on)[tp.tp.path_of_col]  # [D_paths]
    torch.testing.assert_close(out, full * scale[:, None], rtol=0, atol=1e-12)
    assert len(active) == math.ceil(0.3 * tp.n_paths)
    def macs(active_paths):  # multiply-adds of the CG contraction per channel and row
        steps, _, rows = tp.tp.plan(active_paths, x)
        return sum(cg.numel() for _, _, cg, _ in steps), rows

    (work, rows), (dense_work, dense_rows) = macs(active.tolist()), macs(None)
    assert rows < 0.6 * dense_rows and work < 0.6 * dense_work


def test_sparse_tp_is_equivariant():
    torch.manual_seed(4)
    tp = SparseNodeTP(IRS, IRS, TARGET, 0.7).double()
    with torch.no_grad():
        tp.gate.weight.copy_(torch.randn(tp.n_paths, dtype=torch.float64))
    tp.gate.set_phase("fixed")
    x, y = _xy()
    R = o3.rand_matrix(dtype=torch.float64) * -1.0  # improper
    D_in = UniformIrreps(IRS, 1).wigner_D(R)
    irs_out = tp.irs_out
    D_out = torch.block_diag(*[UniformIrreps([ir], 1).wigner_D(R) for ir in irs_out])
    rotated = tp(D_in @ x, D_in @ y)
    torch.testing.assert_close(rotated, D_out @ tp(x, y), rtol=0, atol=1e-10)
