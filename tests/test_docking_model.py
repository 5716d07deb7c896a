"""EquiBind-class docking model: equivariance, batch == single, torsion fit, training task, dock-demo."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eqtool.errors import EqtoolError
from eqtool.models.docking.equibind import PRED_POSITIONS
from eqtool.models.docking.featurize import (
    ComplexInput,
    collate_complexes,
    heavy_atom_indices,
    ligand_graph,
    read_receptor,
    select_pocket,
)
from eqtool.models.docking.geometry import kabsch, segment_softmax
from eqtool.models.docking.inference import FIT_RMSD_PROP, model_poses, random_rotation
from eqtool.models.docking.torsion import fit_torsions, rotatable_torsions
from eqtool.models.registry import build_model

Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import AllChem  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "data" / "dock_train"
RESIDUES = ("ALA", "GLY", "SER", "LEU", "PHE", "ASP", "LYS", "TRP")


def _ligand(smiles="CC(C)NCC(O)COc1cccc2ccccc12", seed=0):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol


def _receptor_pdb(n=40, seed=0, rot=None, shift=None) -> str:
    """PDB text of ``n`` C-alpha atoms on a shell of radius 6-11 Å around the origin."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    xyz = v / np.linalg.norm(v, axis=1, keepdims=True) * rng.uniform(6, 11, size=(n, 1))
    if rot is not None:
        xyz = xyz @ rot.T + shift
    lines = [f"ATOM  {i + 1:5d}  CA  {RESIDUES[i % len(RESIDUES)]} A{i + 1:4d}    "
             f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C" for i, (x, y, z) in enumerate(xyz)]
    return "\n".join(lines) + "\nEND\n"


def _item(mol, pdb, centre, rot=None, shift=None) -> ComplexInput:
    rec = read_receptor(pdb)
    rp, rf = select_pocket(rec, centre, 14.0)
    heavy = heavy_atom_indices(mol)
    x = mol.GetConformer().GetPositions()[heavy]
    if rot is not None:
        x = x @ rot.T + shift
    f, b = ligand_graph(mol)
    return ComplexInput(x, f, b, rp, rf, x.copy())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("equibind", num_features=16, num_layers=2, num_keypoints=4, num_rbf=8).double().eval()
    with torch.no_grad():  # make the coordinate updates matter (they start near zero)
        for layer in m.layers:
            layer.coord[-1].weight.normal_(0.0, 0.3)
    return m


def _predict(model, items):
    batch = collate_complexes(items, model.receptor_cutoff, torch.float64)
    return model(batch)[PRED_POSITIONS].detach().numpy()


def test_prediction_is_equivariant_and_ignores_the_input_ligand_pose(model):
    mol, rng = _ligand(), np.random.default_rng(3)
    rot, shift = random_rotation(rng), np.array([4.0, -9.0, 2.5])
    base = _predict(model, [_item(mol, _receptor_pdb(), np.zeros(3))])
    moved = _predict(model, [_item(mol, _receptor_pdb(rot=rot, shift=shift), shift, rot, shift)])
    assert np.abs(base @ rot.T + shift - moved).max() < 5e-3  # PDB text rounds to 1e-3 Å
    # only the receptor frame matters: moving the input ligand alone changes nothing
    lig_only = _predict(model, [_item(mol, _receptor_pdb(), np.zeros(3), random_rotation(rng), shift)])
    assert np.abs(lig_only - base).max() < 1e-6
    assert np.isfinite(base).all() and np.abs(base).max() < 50


def test_batch_equals_single(model):
    items = [_item(_ligand(s), _receptor_pdb(seed=i), np.zeros(3))
             for i, s in enumerate(["c1ccccc1CCN", "CC(=O)Oc1ccccc1C(=O)O", "OCC1OC(O)C(O)C(O)C1O"])]
    batched = _predict(model, items)
    singles = np.concatenate([_predict(model, [it]) for it in items])
    assert np.abs(batched - singles).max() < 1e-9


def test_loss_and_gradients_are_finite(model):
    from eqtool.models.docking.loss import docking_loss

    items = [_item(_ligand(s), _receptor_pdb(seed=i), np.zeros(3))
             for i, s in enumerate(["c1ccccc1O", "CCCCN"])]
    batch = collate_complexes(items, model.receptor_cutoff, torch.float64)
    batch["ligand_positions_true"] = batch["ligand_positions_true"] + 1.5
    loss, terms = docking_loss(model(batch), batch)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and loss > 0 and terms["rmsd"] > 0
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad()


def test_loss_is_zero_for_the_true_pose_and_grows_with_the_error():
    from eqtool.models.docking.equibind import KEYPOINT_WEIGHTS, RECEPTOR_KEYPOINTS
    from eqtool.models.docking.loss import docking_loss

    items = [_item(_ligand(s), _receptor_pdb(seed=i), np.zeros(3))
             for i, s in enumerate(["c1ccccc1O", "CCCCN"])]
    batch = collate_complexes(items, 10.0, torch.float64)
    true, index = batch["ligand_positions_true"], batch["ligand_batch"]
    w = torch.rand(true.shape[0], 3, dtype=torch.float64)
    kp = torch.zeros(2, 3, 3, dtype=torch.float64).index_add_(0, index, w.unsqueeze(-1) * true.unsqueeze(1))
    out = {PRED_POSITIONS: true.clone(), KEYPOINT_WEIGHTS: w, RECEPTOR_KEYPOINTS: kp[:, [2, 0, 1]]}
    loss, terms = docking_loss(out, batch)  # keypoints in another order: optimal transport matches them
    assert float(loss) < 1e-20 and float(terms["rmsd"]) < 1e-10
    out[PRED_POSITIONS] = true * 0.5  # shrunk ligand: coordinate and geometry terms grow
    _, terms = docking_loss(out, batch)
    assert terms["coordinates"] > 0.1 and terms["geometry"] > 0.1


def test_kabsch_and_segment_softmax():
    rng = np.random.default_rng(0)
    rot = torch.as_tensor(random_rotation(rng))
    p = torch.as_tensor(rng.normal(size=(1, 6, 3)))
    q = p @ rot.T + torch.tensor([1.0, 2.0, 3.0])
    r, t = kabsch(p, q)
    assert torch.allclose(r[0], rot, atol=1e-10) and torch.allclose(t[0], torch.tensor([1.0, 2.0, 3.0],
                                                                                       dtype=t.dtype))
    w = segment_softmax(torch.randn(7, 2), torch.tensor([0, 0, 1, 1, 1, 2, 2]), 3)
    sums = torch.zeros(3, 2).index_add_(0, torch.tensor([0, 0, 1, 1, 1, 2, 2]), w)
    assert torch.allclose(sums, torch.ones(3, 2))


def _bond_geometry(mol, pos):
    lengths = [np.linalg.norm(pos[b.GetBeginAtomIdx()] - pos[b.GetEndAtomIdx()]) for b in mol.GetBonds()]
    angles = []
    for a in mol.GetAtoms():
        nb = [n.GetIdx() for n in a.GetNeighbors()]
        for i in range(len(nb)):
            for j in range(i + 1, len(nb)):
                u, v = pos[nb[i]] - pos[a.GetIdx()], pos[nb[j]] - pos[a.GetIdx()]
                angles.append(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))
    return np.array(lengths), np.array(angles)


def test_torsion_fit_keeps_bond_lengths_and_angles_and_recovers_a_conformer():
    mol = _ligand("CCCCOc1ccc(CC(=O)NCCO)cc1")
    heavy = heavy_atom_indices(mol)
    other = _ligand("CCCCOc1ccc(CC(=O)NCCO)cc1", seed=7).GetConformer().GetPositions()
    rng = np.random.default_rng(1)
    target = other[heavy] @ random_rotation(rng).T + 5.0  # another conformer, placed elsewhere
    pos0 = mol.GetConformer().GetPositions()
    torsions = rotatable_torsions(mol, heavy)
    assert len(torsions) >= 6
    fitted, rmsd = fit_torsions(pos0, heavy, target, torsions)
    from eqtool.models.docking.torsion import align
    rigid = align(pos0, heavy, target)
    rigid_rmsd = np.sqrt(((rigid[heavy] - target) ** 2).sum(-1).mean())
    assert rmsd < 0.3 * rigid_rmsd and rmsd < 0.4
    (l0, a0), (l1, a1) = _bond_geometry(mol, pos0), _bond_geometry(mol, fitted)
    assert np.abs(l0 - l1).max() < 1e-6 and np.abs(a0 - a1).max() < 1e-6


def test_model_poses_rotate_with_the_input(model):
    mol = _ligand()
    rng = np.random.default_rng(5)
    rot, shift = random_rotation(rng), np.array([-3.0, 12.0, 7.0])
    poses = model_poses(model, _receptor_pdb(), mol, np.zeros(3), 2, seed=11)
    moved_mol = Chem.Mol(mol)
    conf = moved_mol.GetConformer()
    for i, xyz in enumerate(mol.GetConformer().GetPositions() @ rot.T + shift):
        conf.SetAtomPosition(i, xyz.tolist())
    moved = model_poses(model, _receptor_pdb(rot=rot, shift=shift), moved_mol, shift, 2, seed=11)
    assert len(poses) == len(moved) == 2
    for a, b in zip(poses, moved, strict=True):
        assert a.GetNumAtoms() == mol.GetNumAtoms()
        assert [x.GetAtomicNum() for x in a.GetAtoms()] == [x.GetAtomicNum() for x in mol.GetAtoms()]
        pa, pb = a.GetConformer().GetPositions(), b.GetConformer().GetPositions()
        assert np.abs(pa @ rot.T + shift - pb).max() < 0.02
        assert a.HasProp(FIT_RMSD_PROP) and np.isfinite(pa).all()
    # hydrogens stay bonded: bond lengths are those of an RDKit conformer
    lengths, _ = _bond_geometry(mol, poses[0].GetConformer().GetPositions())
    assert lengths.min() > 0.9 and lengths.max() < 1.9


def test_bad_inputs_raise_one_line_errors(tmp_path, model):
    with pytest.raises(EqtoolError, match="no protein C-alpha"):
        read_receptor("HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00           O\n")
    with pytest.raises(EqtoolError, match="residues within"):
        model_poses(model, _receptor_pdb(), _ligand(), np.array([100.0, 0.0, 0.0]), 1, 0)
    with pytest.raises(EqtoolError, match="cannot read receptor"):
        read_receptor(str(tmp_path / "missing.pdb"))
    from eqtool.tasks.docking import complex_names
    with pytest.raises(EqtoolError, match="no complexes"):
        complex_names(tmp_path)


def _copy_complexes(dst: Path, names):
    import shutil

    for n in names:
        shutil.copytree(TRAIN / n, dst / n)


@pytest.mark.skipif(not (TRAIN / "split.json").is_file(), reason="data/dock_train not built")
def test_train_docking_writes_a_loadable_model_and_resumes(tmp_path):
    from eqtool.config.load import load_config
    from eqtool.models.files import load_model
    from eqtool.train import train

    split = json.loads((TRAIN / "split.json").read_text())
    names = split["train"][:3] + split["val"][:1] + split["test"][:1]
    data = tmp_path / "data"
    _copy_complexes(data, names)
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": names[:3], "val": names[3:4], "test": names[4:]}))
    over = [f"data.path={data}", f"data.split={split_file}", "trainer.max_epochs=1",
            "trainer.max_time=null", "model.kwargs.num_features=16", "model.kwargs.num_layers=1",
            "data.batch_size=2"]
    recipe = ROOT / "recipes/docking/demo.yaml"
    run = train(load_config(recipe, over, run_dir=str(tmp_path / "run")), log=lambda *a: None)
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["n"] == 1 and np.isfinite(metrics["rmsd_mean"])
    model = load_model(run / "model.pt")
    assert model.config["name"] == "equibind"
    over[2] = "trainer.max_epochs=2"
    train(load_config(recipe, over, run_dir=str(run)), resume=True, log=lambda *a: None)
    assert (run / "config.resume.yaml").is_file()
    with pytest.raises(EqtoolError, match="already has checkpoints"):
        train(load_config(recipe, over, run_dir=str(run)), log=lambda *a: None)


METRICS = ROOT / "eqtool" / "models" / "files" / "dock-demo.metrics.json"


@pytest.mark.skipif(not METRICS.is_file(), reason="dock-demo not shipped yet")
def test_dock_demo_reproduces_its_recorded_held_out_rmsd():
    from eqtool.models.files import load_model
    from eqtool.tasks.docking import evaluate_poses

    recorded = json.loads(METRICS.read_text())["test"]["per_complex"]
    name = sorted(recorded)[0]
    got = evaluate_poses(load_model("dock-demo"), TRAIN, [name])["per_complex"][name]
    assert abs(got - recorded[name]) < 0.05
