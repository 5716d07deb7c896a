"""eqtool.physics.compute_outputs: signs and units against ASE, finite differences, hessian."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eqtool.data import collate
from eqtool.data import keys as K
from eqtool.data.graph import AtomGraph
from eqtool.models import build_model
from eqtool.models.potential.base import edge_vectors
from eqtool.nn import scatter_sum
from eqtool.physics import compute_outputs
from eqtool.testing import check_forces_finite_difference, check_stress_finite_difference, example_graphs

SIGMA, EPS, RC = 2.3, 0.4, 4.5


class PairLJ(nn.Module):
    """Lennard-Jones exactly as ASE's ``LennardJones(smooth=False)`` (shifted energy)."""

    cutoff = RC

    def forward(self, batch):
        vec, _, receiver = edge_vectors(batch)
        r = torch.linalg.vector_norm(vec, dim=-1)
        shift = 4 * EPS * ((SIGMA / RC) ** 12 - (SIGMA / RC) ** 6)
        e = 0.5 * (4 * EPS * ((SIGMA / r) ** 12 - (SIGMA / r) ** 6) - shift) * (r < RC)  # full list
        energies = scatter_sum(e, receiver, batch[K.POSITIONS].shape[0])
        return {K.ENERGIES: energies, K.ENERGY: scatter_sum(energies, batch[K.BATCH], len(batch[K.N_ATOMS]))}


@pytest.fixture(scope="module")
def graphs():
    return example_graphs(labels=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lj_matches_ase_energy_forces_stress(graphs, dtype):
    from ase.calculators.lj import LennardJones

    batch = collate(graphs, dtype=dtype, cutoff=RC)
    out = compute_outputs(PairLJ(), batch, forces=True, stress=True)
    assert out[K.FORCES].dtype == dtype and out[K.STRESS].shape == (3, 3, 3)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    offs = np.concatenate([[0], np.cumsum([g.n_atoms for g in graphs])])
    for b, g in enumerate(graphs):
        atoms = g.to_ase()
        atoms.calc = LennardJones(sigma=SIGMA, epsilon=EPS, rc=RC, smooth=False)
        e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
        scale = max(1.0, np.abs(f_ref).max())
        assert out[K.ENERGY][b].item() == pytest.approx(e_ref, rel=tol, abs=tol)
        np.testing.assert_allclose(out[K.FORCES][offs[b]: offs[b + 1]].double().numpy(), f_ref,
                                   atol=tol * scale)
        stress = out[K.STRESS][b].double().numpy()
        if g.pbc.all():
            s_ref = atoms.get_stress(voigt=False)
            np.testing.assert_allclose(stress, s_ref, atol=tol * max(1e-3, np.abs(s_ref).max()))
            volume = abs(np.linalg.det(g.cell))
            np.testing.assert_allclose(out[K.VIRIAL][b].double().numpy(), -stress * volume,
                                       atol=tol * volume)
        else:
            assert np.all(stress == 0) and np.all(out[K.VIRIAL][b].numpy() == 0)


def test_stress_sign_negative_under_compression():
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    r_min = SIGMA * 2 ** (1 / 6)
    atoms = bulk("Cu", "fcc", a=2**0.5 * 0.85 * r_min)  # nearest neighbours at 0.85 r_min
    g = AtomGraph.from_ase(atoms)
    out = compute_outputs(PairLJ(), collate([g], cutoff=RC), forces=False, stress=True)
    assert torch.trace(out[K.STRESS][0]) < 0

    atoms.calc = LennardJones(sigma=SIGMA, epsilon=EPS, rc=RC, smooth=False)
    np.testing.assert_allclose(out[K.STRESS][0].numpy(), atoms.get_stress(voigt=False), atol=1e-9)
    assert np.trace(atoms.get_stress(voigt=False)) < 0  # repulsive, compressed: negative (ASE sign)


def test_lj_finite_differences(graphs):
    model = PairLJ()
    assert check_forces_finite_difference(model, graphs) < 1e-6
    assert check_stress_finite_difference(model, graphs) < 1e-6


def test_hessian_matches_force_differences(graphs):
    model = build_model("egnn", atomic_numbers=[29, 79], cutoff=4.0, num_features=8, num_layers=2)
    model = model.double()
    g = AtomGraph(positions=graphs[2].positions[:5], atomic_numbers=graphs[2].atomic_numbers[:5])
    batch = collate([g], dtype=torch.float64, cutoff=model.cutoff)
    out = compute_outputs(model, batch, forces=True, hessian=True)
    hess = out["hessian"]
    assert hess.shape == (15, 15)
    torch.testing.assert_close(hess, hess.T, atol=1e-10, rtol=0)
    h = 1e-5
    pos = batch[K.POSITIONS]
    for flat in (0, 7, 14):
        d = torch.zeros(15, dtype=torch.float64)
        d[flat] = h
        fp = compute_outputs(model, {**batch, K.POSITIONS: pos + d.view(5, 3)})[K.FORCES]
        fm = compute_outputs(model, {**batch, K.POSITIONS: pos - d.view(5, 3)})[K.FORCES]
        fd = -(fp - fm).reshape(-1) / (2 * h)
        torch.testing.assert_close(hess[flat], fd, atol=1e-6 * max(1.0, hess.abs().max().item()), rtol=0)
    assert K.FORCES not in compute_outputs(model, batch, forces=False, hessian=True)


def test_training_keeps_graph_inference_detaches(graphs):
    model = build_model("mace", atomic_numbers=[29, 79], cutoff=4.0, hidden_irreps="4x0e+4x1o", max_ell=1,
                        num_interactions=1, correlation=2, radial_mlp=[8])
    batch = collate(graphs, dtype=torch.float32, cutoff=model.cutoff)
    out = compute_outputs(model, batch, forces=True, stress=True, training=True)
    loss = out[K.FORCES].square().sum() + out[K.STRESS].square().sum()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    with torch.no_grad():  # inference works under no_grad and returns detached tensors
        out = compute_outputs(model, batch, forces=True, stress=True)
    assert all(not v.requires_grad for v in out.values())
    assert out[K.FORCES].abs().sum() > 0
