"""EDM diffusion model: equivariance of the denoiser, schedule, sampling, training, ``eqtool generate``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from eqtool.chem import smiles_from_structures
from eqtool.cli.main import main
from eqtool.config import config_from_dict
from eqtool.errors import EqtoolError
from eqtool.io.hdf5 import read_h5
from eqtool.models.files import load_model, save_model
from eqtool.models.generative import (
    EPS_FEATURES,
    EPS_POSITIONS,
    NODE_FEATURES,
    diffusion_loss,
    fully_connected_edges,
    polynomial_alphas2,
    remove_mean,
    respaced_timesteps,
    sample,
    sample_n_atoms,
)
from eqtool.models.generative.schedule import NoiseSchedule
from eqtool.models.registry import build_model
from eqtool.tasks.generative import SMILES_KEY, MoleculeCollater, pack_smiles, unpack_smiles

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT / "data" / "qm9_subset.h5"
TINY = {"num_features": 16, "num_layers": 2, "timesteps": 20}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids oversubscription on a shared machine (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(dtype=torch.float64, scramble=True, **kw) -> torch.nn.Module:
    """A small EDM whose coordinate updates are not near zero (so equivariance tests bite)."""
    torch.manual_seed(0)
    m = build_model("edm", **{**TINY, "n_atoms_hist": [0, 0, 1, 3, 5, 2, 1], **kw}).to(dtype)
    if scramble:
        for block in m.denoiser.blocks:
            torch.nn.init.normal_(block.update.coord_mlp[-1].weight, std=0.5)
    return m.eval()


def noisy_batch(n_atoms=(3, 5, 2, 1), F=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = torch.tensor(n_atoms)
    index = torch.repeat_interleave(torch.arange(len(n)), n)
    x = remove_mean(torch.randn(int(n.sum()), 3, generator=g, dtype=dtype), index, n)
    return {"positions": x, NODE_FEATURES: torch.randn(int(n.sum()), F, generator=g, dtype=dtype),
            "batch": index, "n_atoms": n, "diffusion_time": torch.rand(len(n), generator=g, dtype=dtype)}


def random_orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    if (torch.det(q) < 0) != reflect:
        q = q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    return q


# ------------------------------------------------------------------------------ denoiser symmetry
@pytest.mark.parametrize("seed,reflect", [(1, False), (2, False), (3, True)])
def test_denoiser_rotation_translation(seed, reflect):
    model, b = tiny_model(), noisy_batch(seed=seed)
    out = model(b)
    assert out[EPS_POSITIONS].abs().max() > 1e-2  # not trivially zero
    q = random_orthogonal(seed, reflect)
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randn(len(b["n_atoms"]), 3, generator=gen, dtype=torch.float64)
    moved = dict(b, positions=b["positions"] @ q.T + shift[b["batch"]])
    out2 = model(moved)
    torch.testing.assert_close(out2[EPS_POSITIONS], out[EPS_POSITIONS] @ q.T, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out2[EPS_FEATURES], out[EPS_FEATURES], atol=1e-10, rtol=1e-10)


def test_denoiser_permutation_and_zero_mean():
    model, b = tiny_model(), noisy_batch()
    out = model(b)
    # permute atoms within each molecule (molecules stay contiguous)
    n = b["n_atoms"].tolist()
    starts = np.cumsum([0] + n[:-1])
    rng = np.random.default_rng(0)
    perm = torch.from_numpy(np.concatenate([s + rng.permutation(k) for s, k in zip(starts, n, strict=True)]))
    permuted = dict(b, positions=b["positions"][perm], **{NODE_FEATURES: b[NODE_FEATURES][perm]})
    out2 = model(permuted)
    torch.testing.assert_close(out2[EPS_POSITIONS], out[EPS_POSITIONS][perm], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out2[EPS_FEATURES], out[EPS_FEATURES][perm], atol=1e-10, rtol=1e-10)
    com = remove_mean(out[EPS_POSITIONS], b["batch"], b["n_atoms"]) - out[EPS_POSITIONS]
    assert com.abs().max() < 1e-12


def test_batch_equals_single():
    model, b = tiny_model(), noisy_batch()
    out = model(b)
    off = 0
    for i, k in enumerate(b["n_atoms"].tolist()):
        sl = slice(off, off + k)
        one = {"positions": b["positions"][sl], NODE_FEATURES: b[NODE_FEATURES][sl],
               "batch": torch.zeros(k, dtype=torch.long), "n_atoms": torch.tensor([k]),
               "diffusion_time": b["diffusion_time"][i: i + 1]}
        o = model(one)
        torch.testing.assert_close(o[EPS_POSITIONS], out[EPS_POSITIONS][sl], atol=1e-10, rtol=1e-10)
        off += k


def test_fully_connected_edges():
    n = torch.tensor([3, 1, 2])
    index = torch.repeat_interleave(torch.arange(3), n)
    e = fully_connected_edges(index, n)
    pairs = {tuple(p) for p in e.T.tolist()}
    expected = {(j, i) for grp in ([0, 1, 2], [3], [4, 5]) for i in grp for j in grp if i != j}
    assert pairs == expected and e.shape[1] == len(expected)


# ------------------------------------------------------------------------------ schedule
def test_polynomial_schedule_properties():
    T, s = 1000, 1e-5
    a2 = polynomial_alphas2(T, 2.0, s)
    assert a2.shape == (T + 1,)
    assert np.all(np.diff(a2) < 0)  # alphas strictly decrease
    assert a2[0] == pytest.approx(1 - s, abs=1e-12)
    assert s <= a2[-1] < 2 * s  # alpha_T^2 reaches the precision floor
    sched = NoiseSchedule("polynomial_2", T, s)
    gamma = sched.gamma(torch.arange(T + 1))
    snr = sched.snr(gamma)
    assert torch.all(snr[1:] < snr[:-1])  # SNR decreases monotonically
    torch.testing.assert_close(snr, torch.from_numpy(a2 / (1 - a2)))
    ones = torch.ones(T + 1, dtype=torch.float64)
    torch.testing.assert_close(sched.alpha(gamma) ** 2 + sched.sigma(gamma) ** 2, ones)
    # the step ratio alpha_t^2 / alpha_{t-1}^2 is clipped at 1e-3 before the squeeze
    raw = (a2 - s) / (1 - 2 * s)
    assert np.min(raw[1:] / raw[:-1]) >= 1e-3 - 1e-12
    # q(z_t | z_s), s < t: alpha_t|s = alpha_t / alpha_s, sigma2_t|s = sigma_t^2 - alpha_t|s^2 sigma_s^2
    t, s_ = gamma[700], gamma[300]
    sig2, alpha = sched.transition(t, s_)
    torch.testing.assert_close(alpha, sched.alpha(t) / sched.alpha(s_))
    torch.testing.assert_close(sig2, sched.sigma(t) ** 2 - alpha**2 * sched.sigma(s_) ** 2)
    with pytest.raises(EqtoolError, match="noise schedule"):
        NoiseSchedule("cosine_7", 10, 1e-5)


def test_respaced_timesteps():
    assert respaced_timesteps(10, None) == list(range(11))
    assert respaced_timesteps(10, 11) == list(range(11))
    taus = respaced_timesteps(1000, 50)
    assert len(taus) == 50 and taus[0] == 0 and taus[-1] == 1000 and taus == sorted(set(taus))
    for bad in (1, 0, 1002):
        with pytest.raises(EqtoolError):
            respaced_timesteps(1000, bad)


# ------------------------------------------------------------------------------ sampling
class CountCalls:
    def __init__(self, module):
        self.calls, self.inputs = 0, []
        module.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.calls += 1
        self.inputs.append(args[0]["positions"].detach().clone())


@pytest.mark.parametrize("steps", [None, 2, 7, 21])
def test_sampler_network_calls_and_zero_com(steps):
    model = tiny_model(scramble=False)
    counter = CountCalls(model.denoiser)
    n_atoms = [4, 2, 6]
    mols = sample(model, n_atoms, steps=steps, generator=torch.Generator().manual_seed(0))
    assert counter.calls == (model.timesteps + 1 if steps is None else steps)
    assert [len(z) for _, z in mols] == n_atoms
    index = torch.repeat_interleave(torch.arange(3), torch.tensor(n_atoms))
    for z in counter.inputs:  # every intermediate z_t lies in the zero-CoM subspace
        com = torch.zeros(3, 3, dtype=z.dtype).index_add_(0, index, z)
        assert com.abs().max() < 1e-9
    for pos, z in mols:
        assert np.abs(pos.mean(0)).max() < 1e-9 and pos.dtype == np.float64
        assert set(z.tolist()) <= set(model.atom_types)


def test_sampling_reproducible_and_histogram():
    model = tiny_model(scramble=False)
    a = sample(model, [3, 5], steps=5, generator=torch.Generator().manual_seed(3))
    b = sample(model, [3, 5], steps=5, generator=torch.Generator().manual_seed(3))
    for (p, z), (q, y) in zip(a, b, strict=True):
        np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(z, y)
    counts = sample_n_atoms(model, 2000, torch.Generator().manual_seed(0))
    freq = np.bincount(counts.numpy(), minlength=7) / 2000
    np.testing.assert_allclose(freq, np.array([0, 0, 1, 3, 5, 2, 1]) / 12, atol=0.04)
    assert model.max_atoms == 6


class FeedbackDenoiser(torch.nn.Module):
    """Wraps a model's denoiser: its feature noise grows with the input features (``gain * h``),
    the runaway feedback an undertrained denoiser shows on inputs it never saw."""

    def __init__(self, inner, gain=1e3):
        super().__init__()
        self.inner, self.gain = inner, gain

    def forward(self, batch):
        out = dict(self.inner(batch))
        out[EPS_FEATURES] = out[EPS_FEATURES] + self.gain * batch[NODE_FEATURES]
        return out


def test_clip_features_stops_runaway_features():
    model = tiny_model(dtype=torch.float32, scramble=False)  # float32, as sampled in practice
    model.denoiser = FeedbackDenoiser(model.denoiser)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with np.errstate(all="ignore"):
        runaway = sample(model, [4, 3], steps=21, generator=gen(), clip_features=False)
    assert not all(np.isfinite(p).all() for p, _ in runaway)  # without the clip the chain diverges
    mols = sample(model, [4, 3], steps=21, generator=gen())
    assert all(np.isfinite(p).all() for p, _ in mols) and [len(z) for _, z in mols] == [4, 3]
    assert model.feature_bound == pytest.approx(max(model.type_scale, model.charge_scale * 9))


def test_clip_features_inactive_inside_bound():
    from eqtool.models.generative.diffusion import _clipped_eps

    g = torch.Generator().manual_seed(1)
    h0 = torch.rand(5, 6, generator=g, dtype=torch.float64) * 0.5  # clean features within the bound
    eps = torch.randn(5, 6, generator=g, dtype=torch.float64)
    alpha, sigma = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    z = alpha * h0 + sigma * eps
    torch.testing.assert_close(_clipped_eps(z, eps, alpha, sigma, 1.0), eps)
    clipped = _clipped_eps(z, eps + 100.0, alpha, sigma, 1.0)  # denoised estimate far outside
    assert ((z - sigma * clipped) / alpha).abs().max() <= 1.0 + 1e-12


# ------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def qm9_subset():
    return read_h5(SUBSET)[:256]


def test_training_reduces_loss(qm9_subset):
    torch.manual_seed(0)
    model = build_model("edm", num_features=32, num_layers=2, timesteps=100)
    collate = MoleculeCollater(torch.float32)
    batches = [collate([(g.positions, g.atomic_numbers) for g in qm9_subset[i: i + 16]])
               for i in range(0, 128, 16)]
    t_fixed = torch.randint(0, 101, (16,), generator=torch.Generator().manual_seed(1))

    def evaluate():
        with torch.no_grad():
            return float(sum(diffusion_loss(model, b, torch.Generator().manual_seed(k), t_int=t_fixed)[0]
                             for k, b in enumerate(batches[:4])))

    before = evaluate()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for step in range(30):
        loss, terms = diffusion_loss(model, batches[step % len(batches)], gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss) and set(terms) == {"positions", "features"}
    after = evaluate()
    assert after < 0.8 * before, (before, after)


def test_encode_rejects_unknown_element():
    model = build_model("edm", **TINY, atom_types=[1, 6])
    b = MoleculeCollater(torch.float32)([(np.zeros((2, 3)) + [[0, 0, 0], [1, 0, 0]], np.array([6, 8]))])
    with pytest.raises(EqtoolError, match=r"\[8\]"):
        model.encode(b)


def test_config_and_train_generative(tmp_path):
    from eqtool.tasks.generative import read_train_smiles, train_generative

    raw = {"task": "generative", "data": {"path": str(SUBSET), "max_train": 48, "batch_size": 16,
                                          "val_fraction": 0.02, "test_fraction": 0.0},
           "model": {"name": "edm", "kwargs": {"num_features": 8, "num_layers": 1, "timesteps": 10}},
           "loss": {"kind": "l2", "features": 0.5},
           "trainer": {"max_epochs": 1, "dtype": "float32", "accelerator": "cpu", "devices": 1,
                       "progress_bar": False}, "run_dir": str(tmp_path / "run")}
    cfg = config_from_dict(raw)
    assert cfg.loss.features == 0.5
    with pytest.raises(EqtoolError, match="unknown key"):
        config_from_dict({**raw, "loss": {"kind": "l2", "energy": 1.0}})
    with pytest.raises(EqtoolError, match="kind"):
        config_from_dict({**raw, "loss": {"kind": "vlb"}})
    run = train_generative(cfg, log=lambda *a: None)
    model = load_model(run / "model.pt")
    assert model.config["atom_types"] and sum(model.n_atoms_hist) == 48
    from eqtool.models.files import read_model_file

    smiles = read_train_smiles(read_model_file(run / "model.pt"))
    assert 30 <= len(smiles) <= 48
    bad = config_from_dict({**raw, "model": {"name": "egnn"}, "run_dir": str(tmp_path / "bad")})
    with pytest.raises(EqtoolError, match="not a diffusion model"):
        train_generative(bad, log=lambda *a: None)


def test_pack_smiles_roundtrip():
    assert unpack_smiles(pack_smiles(["CCO", None, "C", "CCO", ""])) == ["C", "CCO"]
    assert unpack_smiles(pack_smiles([])) == []


# ------------------------------------------------------------------------------ CLI
def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return (exc.value.code or 0), out, err


@pytest.fixture
def model_file(tmp_path, qm9_subset) -> Path:
    model = tiny_model(dtype=torch.float32, scramble=False, n_atoms_hist=[0, 0, 0, 2, 4, 3, 1])
    train = smiles_from_structures(qm9_subset[:50])
    return save_model(model, tmp_path / "tiny.pt", extra={SMILES_KEY: pack_smiles(train)})


def test_generate_cli_end_to_end(model_file, tmp_path, capsys):
    out, xyz = tmp_path / "mols.sdf", tmp_path / "mols.extxyz"
    code, stdout, err = run(["generate", "--model", model_file, "-n", 7, "--out", out, "--steps", 5,
                             "--seed", 1, "--batch-size", 3, "--xyz", xyz], capsys)
    assert code == 0, err
    for needle in ("atom stability", "molecule stability", "validity", "uniqueness", "novelty",
                   "time per molecule"):
        assert needle in stdout
    text = out.read_text()
    assert text.count("$$$$") == 7 and "generated_0" in text
    from ase.io import read

    frames = read(xyz, ":")
    assert len(frames) == 7 and all(3 <= len(a) <= 6 for a in frames)
    # fixed atom count and reproducibility
    out2 = tmp_path / "fixed.sdf"
    code, _, err = run(["generate", "-m", model_file, "-n", 2, "-o", out2, "--n-atoms", 5, "--steps", 3],
                       capsys)
    assert code == 0, err
    from rdkit import Chem

    mols = [m for m in Chem.SDMolSupplier(str(out2), sanitize=False, removeHs=False)]
    assert [m.GetNumAtoms() for m in mols] == [5, 5]
    code, _, _ = run(["generate", "-m", model_file, "-n", 2, "-o", tmp_path / "again.sdf", "--n-atoms", 5,
                      "--steps", 3], capsys)
    assert (tmp_path / "again.sdf").read_text() == out2.read_text()


def test_generate_cli_diverged_molecules_not_written(model_file, tmp_path, capsys, monkeypatch):
    from eqtool.models.generative.edm import EDM

    forward = EDM.forward

    def nan_first(self, batch):  # molecule 0 of every batch gets a NaN position noise
        out = dict(forward(self, batch))
        out[EPS_POSITIONS] = out[EPS_POSITIONS].masked_fill((batch["batch"] == 0).unsqueeze(-1), math.nan)
        return out

    monkeypatch.setattr(EDM, "forward", nan_first)
    out, xyz = tmp_path / "mols.sdf", tmp_path / "mols.extxyz"
    code, stdout, err = run(["generate", "-m", model_file, "-n", 5, "-o", out, "--steps", 4,
                             "--batch-size", 3, "--xyz", xyz], capsys)
    assert code == 0, err
    assert "2 of 5 molecules diverged" in err
    text = out.read_text()
    assert text.count("$$$$") == 3 and "generated_0" not in text and "generated_3" not in text
    assert "generated_1" in text and "generated_4" in text
    from ase.io import read

    assert [a.info["name"] for a in read(xyz, ":")] == ["generated_1", "generated_2", "generated_4"]


@pytest.mark.parametrize("args,needle", [
    (["-n", 0], "-n"),
    (["-n", -3], "-n"),
    (["-n", 2, "--n-atoms", 7], "maximum of 6"),
    (["-n", 2, "--n-atoms", 0], "--n-atoms"),
    (["-n", 2, "--steps", 1], "--steps"),
    (["-n", 2, "--steps", 22], "--steps"),
    (["-n", 2, "--batch-size", 0], "--batch-size"),
])
def test_generate_cli_bad_options(model_file, tmp_path, capsys, args, needle):
    out = tmp_path / "never.sdf"
    code, _, err = run(["generate", "--model", model_file, "--out", out, *args], capsys)
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert not out.exists() and list(tmp_path.glob("never*")) == []


def test_generate_cli_bad_model_files(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model at all")
    potential = build_model("egnn", atomic_numbers=[1, 8], cutoff=3.0)
    pot_file = save_model(potential, tmp_path / "pot.pt")
    for model, needle in ((garbage, "not an eqtool model file"), (pot_file, "not a generative model"),
                          (tmp_path / "missing.pt", "not found")):
        out = tmp_path / "never.sdf"
        code, _, err = run(["generate", "--model", model, "-n", 2, "--out", out], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
        assert str(model.name) in err
        assert not out.exists()


def test_generate_cli_missing_output_folder(model_file, tmp_path, capsys):
    out = tmp_path / "no" / "x.sdf"
    code, _, err = run(["generate", "--model", model_file, "-n", 2, "--out", out], capsys)
    assert code == 2 and "does not exist" in err


def test_noise_schedule_matches_model_gamma():
    model = tiny_model()
    g = model.schedule.gamma(torch.tensor([0, model.timesteps]))
    assert g[0] < -10 and g[1] > 10  # alpha_0 ~ 1, alpha_T ~ 0
    assert math.isinf(model.cutoff)


def test_shipped_qm9_edm():
    from eqtool.cli.generate import load_generator
    from eqtool.tasks.generative import read_train_smiles

    model, payload = load_generator("qm9-edm")
    assert model.atom_types == [1, 6, 7, 8, 9] and model.timesteps == 1000 and model.max_atoms == 29
    assert len(read_train_smiles(payload, payload["path"])) > 90_000  # EDM's 100k training molecules
    mols = sample(model, [9, 12], steps=4, generator=torch.Generator().manual_seed(0))
    assert [len(z) for _, z in mols] == [9, 12] and all(np.isfinite(p).all() for p, _ in mols)
