"""Convert QM9 (from the ``qm9pack`` wheel) to eqtool HDF5, with EDM's train/val/test split.

Run::

    pip install qm9pack
    python data/make_qm9.py                    # all 130,831 molecules -> data/qm9.h5 + data/qm9.split.json
    python data/make_qm9.py --subset 2000      # seeded random sample -> data/qm9_subset.h5

Source: QM9 (Ramakrishnan, Dral, Rupp, von Lilienfeld, Sci. Data 1, 140022 (2014)), B3LYP/6-31G(2df,p)
geometries and properties of the 133,885 GDB-9 molecules (H C N O F) less the 3,054 that failed
the consistency check, i.e. the 130,831 molecules EDM uses. ``qm9pack`` ships them as CSVs in
``qm9pack/data/``; its ``__init__`` imports ``pkg_resources`` (gone from current setuptools), so
the package is located with :func:`importlib.util.find_spec` and never imported.

Each system: positions (Å), atomic numbers, ``info`` strings ``smiles`` (QM9's SMILES),
``name`` (``dsgdb9nsd_000001`` ...) and ``split`` (``train``/``val``/``test`` in EDM's split), and
system-level labels (energies converted from Hartree to eV with ``ase.units.Hartree``):

    A, B, C   rotational constants, GHz        mu     dipole moment, D
    alpha     isotropic polarisability, a0^3    r2     electronic spatial extent, a0^2
    homo, lumo, gap   orbital energies, eV      zpve   zero-point vibrational energy, eV
    U0, U     internal energy at 0 K / 298.15 K, eV
    H, G      enthalpy / free energy at 298.15 K, eV
    Cv        heat capacity at 298.15 K, cal/(mol K)

Split: as EDM (cormorant's ``gen_splits_gdb9``): molecules in QM9-index order, ``numpy.random.seed(0)``
then ``numpy.random.permutation(130831)``; the first 100,000 are train, the next 17,748 val, the
last 13,083 test. ``data/qm9.split.json`` lists them as 0-based row indices of ``data/qm9.h5``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
N_QM9 = 130_831
N_TRAIN, N_VAL, N_TEST = 100_000, 17_748, 13_083
HARTREE_EV = 27.211386024367243  # ase.units.Hartree (CODATA 2014), fixed here so files are reproducible
_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
# our label name -> (qm9pack column, factor to our unit)
PROPERTIES = {
    "A": ("RotA_GHz", 1.0), "B": ("RotB_GHz", 1.0), "C": ("RotC_GHz", 1.0),
    "mu": ("Dipole_debye", 1.0), "alpha": ("Polarizability_bohr3", 1.0),
    "homo": ("HOMO_au", HARTREE_EV), "lumo": ("LUMO_au", HARTREE_EV), "gap": ("HOMO_LUMO_gap_au", HARTREE_EV),
    "r2": ("R2_bohr2", 1.0), "zpve": ("ZPVE_au", HARTREE_EV),
    "U0": ("InternalEnergy_0K_au", HARTREE_EV), "U": ("InternalEnergy_298K_au", HARTREE_EV),
    "H": ("Enthalphy_298K_au", HARTREE_EV), "G": ("GibbsFreeEnergy_298K_au", HARTREE_EV),
    "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0),
}
UNITS = {"A": "GHz", "B": "GHz", "C": "GHz", "mu": "D", "alpha": "a0^3", "homo": "eV", "lumo": "eV",
         "gap": "eV", "r2": "a0^2", "zpve": "eV", "U0": "eV", "U": "eV", "H": "eV", "G": "eV",
         "Cv": "cal/(mol K)"}
SOURCE = ("QM9 (Ramakrishnan et al., Sci. Data 1, 140022 (2014)), 130,831 molecules, via the qm9pack "
          "wheel; label units: " + json.dumps(UNITS))
LEVEL = "B3LYP/6-31G(2df,p)"


def qm9pack_folder() -> Path:
    """The ``qm9pack/data`` folder of the installed wheel (without importing the package)."""
    from eqtool.errors import EqtoolError

    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise EqtoolError("the qm9pack package is not installed; run `pip install qm9pack`", "qm9pack")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not (folder / "qm9_part1.csv").is_file():
        raise EqtoolError("qm9pack is installed but has no data/qm9_part1.csv", str(folder))
    return folder


def read_qm9pack(folder: Path) -> Iterator[dict]:
    """Yield one record per molecule: index, name, smiles, symbols, positions [N,3] Å, properties."""
    from eqtool.errors import EqtoolError

    csv.field_size_limit(1 << 24)
    for part in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"):
        path = folder / part
        with open(path, newline="", encoding="utf-8") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    # the CSV holds Python literals ('C' quotes, "0." floats): json cannot read them
                    symbols = ast.literal_eval(row["Elements"])
                    pos = np.asarray(ast.literal_eval(row["XYZ_Ang"]), dtype=np.float64).reshape(-1, 3)
                    props = {k: float(row[col]) * f for k, (col, f) in PROPERTIES.items()}
                    z = np.array([_Z[s] for s in symbols], dtype=np.int64)
                    index = int(row["Index"])
                except (ValueError, SyntaxError, KeyError, TypeError) as e:
                    raise EqtoolError(f"cannot parse row: {type(e).__name__}: {e}", str(path),
                                      f"line {line}") from None
                if len(z) != len(pos) or len(z) != int(row["N_atoms"]):
                    raise EqtoolError(f"{len(z)} elements, {len(pos)} positions, N_atoms={row['N_atoms']}",
                                      str(path), f"line {line}")
                yield {"index": index, "name": row["XYZ_file"].removesuffix(".xyz"),
                       "smiles": row["SMILES"], "z": z, "positions": pos, "props": props}


def edm_split(n: int = N_QM9) -> dict[str, np.ndarray]:
    """EDM's split of the ``n`` molecules (in QM9-index order) as sorted 0-based indices."""
    rng = np.random.RandomState(0)  # == np.random.seed(0); np.random.permutation(n), as EDM
    perm = rng.permutation(n)
    n_test = int(0.1 * n)
    n_val = n - N_TRAIN - n_test
    return {"train": np.sort(perm[:N_TRAIN]), "val": np.sort(perm[N_TRAIN:N_TRAIN + n_val]),
            "test": np.sort(perm[N_TRAIN + n_val:])}


def load_all(folder: Path) -> list[dict]:
    records = list(read_qm9pack(folder))
    records.sort(key=lambda r: r["index"])
    if len(records) != N_QM9:
        from eqtool.errors import EqtoolError

        raise EqtoolError(f"found {len(records)} molecules, expected {N_QM9}", str(folder))
    return records


def write(path: Path, records: list[dict], split_of: np.ndarray) -> str:
    """Write ``records`` (with their split names) to ``path`` in blocks; returns the content hash."""
    from eqtool.io.hdf5 import H5Writer

    with H5Writer(path, source=SOURCE, level_of_theory=LEVEL, info_keys=("smiles", "name", "split")) as w:
        for a in range(0, len(records), 4096):
            block = records[a: a + 4096]
            w.append_arrays(
                n_atoms=[len(r["z"]) for r in block],
                positions=np.concatenate([r["positions"] for r in block]),
                atomic_numbers=np.concatenate([r["z"] for r in block]),
                labels={k: np.array([r["props"][k] for r in block]) for k in PROPERTIES},
                info={"smiles": [r["smiles"] for r in block], "name": [r["name"] for r in block],
                      "split": [str(s) for s in split_of[a: a + 4096]]},
            )
    return w.close()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="output .h5 (default data/qm9.h5, or data/qm9_subset.h5 "
                                              "with --subset)")
    p.add_argument("--subset", type=int, default=None, help="write only N molecules, a seeded random sample")
    p.add_argument("--seed", type=int, default=0, help="seed of the --subset sample (not of EDM's split)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    from eqtool.errors import EqtoolError
    from eqtool.io.atomic import atomic_write

    try:
        records = load_all(qm9pack_folder())
        split = edm_split(len(records))
        split_of = np.empty(len(records), dtype=object)
        for name, idx in split.items():
            split_of[idx] = name
        if args.subset is None:
            out = Path(args.out or HERE / "qm9.h5")
            digest = write(out, records, split_of)
            split_path = out.with_suffix(".split.json")
            record = {"file": out.name, "n_systems": len(records), "seed": 0, "method": "EDM (cormorant "
                      "gen_splits_gdb9): numpy.random.seed(0), permutation, 100000/17748/13083",
                      **{k: v.tolist() for k, v in split.items()}}
            with atomic_write(split_path) as fh:
                json.dump(record, fh)
                fh.write("\n")
            print(f"wrote {out} ({len(records)} molecules, content hash {digest[:12]}) and {split_path}: "
                  + ", ".join(f"{k} {len(v)}" for k, v in split.items()))
        else:
            if not 1 <= args.subset <= len(records):
                raise EqtoolError(f"--subset must be in 1..{len(records)}, got {args.subset}", "--subset")
            pick = np.sort(np.random.default_rng(args.seed).choice(len(records), args.subset, replace=False))
            out = Path(args.out or HERE / "qm9_subset.h5")
            digest = write(out, [records[i] for i in pick], split_of[pick])
            counts = {k: int((split_of[pick] == k).sum()) for k in split}
            print(f"wrote {out} ({args.subset} molecules, seed {args.seed}, content hash {digest[:12]}): "
                  + ", ".join(f"{k} {v}" for k, v in counts.items()))
    except EqtoolError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
