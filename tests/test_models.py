"""Every registered model through the shipped checks, plus registry, config and stats contracts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eqtool.data import collate
from eqtool.data import keys as K
from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError
from eqtool.models import build_model
from eqtool.models.potential.stats import compute_avg_num_neighbors, compute_scale_shift, fit_e0s
from eqtool.models.registry import models_of_kind
from eqtool.physics import compute_outputs
from eqtool.testing import example_graphs, run_all_checks

# small but complete architectures (every code path: l up to 2, correlation 3, 2 layers)
SMALL = {
    "mace": dict(hidden_irreps="6x0e+6x1o+6x2e", max_ell=2, num_interactions=2, correlation=3,
                 radial_mlp=[12, 12], readout_mlp=8),
    "egnn": dict(num_features=12, num_layers=2),
}


POTENTIALS = sorted(models_of_kind("potential"))


@pytest.fixture(scope="module")
def graphs():
    return example_graphs(seed=1)


def small_model(name, **extra):
    torch.manual_seed(0)
    kw = dict(atomic_numbers=[29, 79], cutoff=4.0, avg_num_neighbors=8.0, scale=0.7, shift=-0.2,
              e0s={29: -1.5, 79: -2.5})
    kw.update(SMALL[name])
    kw.update(extra)
    return build_model(name, **kw)


def test_every_potential_has_a_small_config():
    assert {"mace", "egnn"} <= set(POTENTIALS)
    assert set(SMALL) == set(POTENTIALS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", POTENTIALS)
def test_all_checks_pass(name, dtype, graphs):
    model = small_model(name)
    results = run_all_checks(model, graphs, dtype)
    assert [r.name for r in results] == ["rotation", "translation", "permutation", "periodic_images",
                                         "batch_consistency", "forces_fd", "stress_fd"]
    failed = [r for r in results if not r.passed]
    assert not failed, failed
    # the model is not trivially invariant: forces and stress are really non-zero
    batch = collate(graphs, dtype=dtype, cutoff=model.cutoff)
    out = compute_outputs(model.to(dtype), batch, forces=True, stress=True)
    assert out[K.FORCES].abs().max() > 1e-3 and out[K.STRESS][0].abs().max() > 1e-5
    assert out[K.ENERGY].dtype == dtype and out[K.ENERGIES].shape == (batch[K.POSITIONS].shape[0],)
    torch.testing.assert_close(out[K.ENERGY], torch.zeros_like(out[K.ENERGY]).index_add_(
        0, batch[K.BATCH], out[K.ENERGIES]))


@pytest.mark.parametrize("name", POTENTIALS)
def test_checks_catch_a_broken_model(name, graphs):
    """The checks can fail: a model fed absolute positions is not translation invariant."""
    model = small_model(name)

    class Broken(torch.nn.Module):
        cutoff = model.cutoff

        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, batch):
            out = self.inner(batch)
            extra = 0.1 * batch[K.POSITIONS][:, 0] ** 2
            energies = out[K.ENERGIES] + extra
            return {K.ENERGIES: energies,
                    K.ENERGY: out[K.ENERGY].index_add(0, batch[K.BATCH], extra)}

    results = {r.name: r for r in run_all_checks(Broken(), graphs, torch.float64)}
    assert not results["translation"].passed and not results["rotation"].passed
    assert results["forces_fd"].passed and results["batch_consistency"].passed


@pytest.mark.parametrize("name", POTENTIALS)
def test_config_roundtrip_through_json(name, graphs):
    model = small_model(name)
    config = json.loads(json.dumps(model.config))
    assert config["name"] == name
    clone = build_model(**config)
    clone.load_state_dict(model.state_dict())
    assert clone.cutoff == model.cutoff == 4.0
    assert clone.atomic_numbers.tolist() == [29, 79]
    batch = collate(graphs, dtype=torch.float64, cutoff=model.cutoff)
    a = model.double()(batch)[K.ENERGY]
    b = clone.double()(batch)[K.ENERGY]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", POTENTIALS)
def test_e0s_scale_shift_enter_energies(name, graphs):
    model = small_model(name).double()
    batch = collate(graphs, dtype=torch.float64, cutoff=model.cutoff)
    base = model(batch)[K.ENERGIES]
    other = small_model(name, e0s={29: 0.5, 79: -1.0}, scale=0.7, shift=0.3).double()(batch)[K.ENERGIES]
    z = batch[K.ATOMIC_NUMBERS]
    delta = (torch.where(z == 29, 2.0, 1.5) + 0.5).double()
    torch.testing.assert_close(other - base, delta)


@pytest.mark.parametrize("name", POTENTIALS)
def test_smooth_at_cutoff(name):
    """A dimer's energy goes continuously to the isolated-atom value as r crosses the cutoff."""
    model = small_model(name).double()

    def energy(r):
        g = AtomGraph(positions=[[0, 0, 0], [r, 0, 0]], atomic_numbers=[29, 79])
        return compute_outputs(model, collate([g], torch.float64, cutoff=4.0))

    far, near = energy(4.5), energy(4.0 - 1e-4)
    assert far[K.FORCES].abs().max() == 0
    assert abs(near[K.ENERGY].item() - far[K.ENERGY].item()) < 1e-8
    assert near[K.FORCES].abs().max() < 1e-6
    assert abs(energy(3.0)[K.ENERGY].item() - far[K.ENERGY].item()) > 1e-6  # but it does interact


@pytest.mark.parametrize("name", POTENTIALS)
def test_missing_element_is_a_clear_error(name, graphs):
    model = build_model(name, atomic_numbers=[29], cutoff=4.0, **SMALL[name])
    batch = collate(graphs, dtype=torch.float32, cutoff=model.cutoff)
    with pytest.raises(EqtoolError, match="Au.*not supported.*Cu"):
        model(batch)


def test_registry_errors():
    with pytest.raises(EqtoolError, match="unknown model 'nope'.*egnn.*mace"):
        build_model("nope")
    with pytest.raises(EqtoolError, match="unknown option.*hidden_size.*valid options.*hidden_irreps"):
        build_model("mace", atomic_numbers=[29], hidden_size=3)
    bad = [
        dict(hidden_irreps="8x0e+4x1o"), dict(hidden_irreps="8x1o+8x0e"), dict(hidden_irreps="8x0e+8x1e"),
        dict(hidden_irreps="8x0e+8x2e", max_ell=1), dict(cutoff=-1.0), dict(correlation=0),
        dict(num_interactions=0), dict(e0s={29: -1.0, 79: -2.0}), dict(atomic_numbers=[0]),
        dict(radial_mlp=[0]), dict(avg_num_neighbors=0.0),
    ]
    for kw in bad:
        kw = {"atomic_numbers": [29], **kw}
        with pytest.raises(EqtoolError):
            build_model("mace", **kw)
    with pytest.raises(EqtoolError, match="atomic_numbers"):
        build_model("egnn")
    assert build_model("egnn", e0s={"29": -3.0}).atomic_numbers.tolist() == [29]  # JSON-style keys


def test_batch_without_edges_or_wrong_dtype_is_an_error(graphs):
    model = small_model("egnn")
    with pytest.raises(EqtoolError, match="edge_index"):
        model(collate(graphs, dtype=torch.float32))
    with pytest.raises(EqtoolError, match="float64.*float32"):
        model(collate(graphs, dtype=torch.float64, cutoff=model.cutoff))


def test_stats_helpers_recover_known_values(graphs):
    rng = np.random.default_rng(0)
    e0 = {29: -3.25, 79: -1.5}
    labelled = []
    for g in graphs * 2:
        g = g.with_edges(4.0)
        noise = 0.01 * rng.standard_normal()
        energy = sum(e0[int(z)] for z in g.atomic_numbers) + 0.05 * g.n_atoms + noise
        g.labels = {K.ENERGY: np.asarray(energy), K.FORCES: rng.standard_normal((g.n_atoms, 3)) * 0.3}
        labelled.append(g)
    batches = [collate(labelled[:2]), collate(labelled[2:])]
    fitted = fit_e0s(batches)
    assert set(fitted) == {29, 79}
    assert fit_e0s(labelled) == pytest.approx(fitted)
    # counts per system: bulk 4 Cu, slab 7 Cu + 1 Au, cluster 11 Cu + 2 Au -> E0 absorbs the 0.05/atom
    assert fitted[29] == pytest.approx(e0[29] + 0.05, abs=0.02)
    n_edges = sum(g.n_edges for g in labelled)
    assert compute_avg_num_neighbors(batches) == pytest.approx(n_edges / sum(g.n_atoms for g in labelled))
    scale, shift = compute_scale_shift(batches, e0)
    forces = np.concatenate([g.labels[K.FORCES] for g in labelled])
    assert scale == pytest.approx(np.sqrt(np.mean(forces**2)))
    assert shift == pytest.approx(0.05, abs=0.01)
    unlabelled = [AtomGraph(positions=g.positions, atomic_numbers=g.atomic_numbers) for g in graphs]
    with pytest.raises(EqtoolError, match="energy"):
        fit_e0s(unlabelled)
    with pytest.raises(EqtoolError, match="edge_index"):
        compute_avg_num_neighbors([collate(unlabelled)])
