"""RDKit conversion and files: SDF/MOL/MOL2 reading, SDF writing, SMILES -> 3D.

Molecules keep their hydrogens and use their 3D conformer (2D depictions are rejected).

Bond encoding in ``graph.info["bonds"]``: an int64 array ``[n_bonds, 3]`` of rows
``(i, j, order)`` with 0-based atom indices ``i < j`` and ``order`` as in the MDL molfile
bond-type field: 1 single, 2 double, 3 triple (bonds are stored in a Kekulé form), 4 aromatic
(only when no Kekulé form exists), 9 dative (``i`` donates to ``j``; not sorted).

Other metadata set by the readers: ``info["smiles"]`` (canonical SMILES without explicit H),
``info["charge"]`` (total formal charge, int), ``info["formal_charges"]`` (``[N]`` int64, only
when some atom is charged), ``info["name"]`` (the record title, when set). An SDF property
``energy`` is read as the energy label (eV); other SDF properties go to ``info`` as strings.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eqtool.data import keys as K
from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError
from eqtool.io.atomic import atomic_write

__all__ = ["from_rdkit", "to_rdkit", "smiles_to_graph", "read_rdkit", "write_sdf",
           "DEFAULT_SEED", "BOND_SINGLE", "BOND_DOUBLE", "BOND_TRIPLE", "BOND_AROMATIC",
           "BOND_DATIVE"]

DEFAULT_SEED = 0xF00D  # ETKDG random seed for SMILES embedding
BOND_SINGLE, BOND_DOUBLE, BOND_TRIPLE, BOND_AROMATIC, BOND_DATIVE = 1, 2, 3, 4, 9
_RESERVED = {"bonds", "smiles", "charge", "formal_charges", "name", "energy"}


def _chem():
    try:
        from rdkit import Chem
    except ImportError:  # optional dependency
        raise EqtoolError("RDKit is not installed; install it with `pip install rdkit`",
                          "rdkit") from None
    return Chem


def _bond_types():
    Chem = _chem()
    bt = Chem.BondType
    return {bt.SINGLE: BOND_SINGLE, bt.DOUBLE: BOND_DOUBLE, bt.TRIPLE: BOND_TRIPLE,
            bt.AROMATIC: BOND_AROMATIC, bt.DATIVE: BOND_DATIVE}


def _rdkit_message(messages: str, default: str) -> str:
    """First meaningful line of RDKit's captured error log, without timestamps."""
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\]\s*", "", ln).strip() for ln in messages.splitlines()]
    lines = [ln.removeprefix("ERROR: ") for ln in lines if ln and not set(ln) <= set("~^ ")]
    for ln in lines:
        if "moving to the beginning" not in ln:
            return ln
    return default


def _sanitize(mol, source: str | None, where: str | None = None):
    from rdkit import rdBase

    Chem = _chem()
    try:
        with rdBase.CaptureErrorLog():
            Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises several sanitization exception types
        raise EqtoolError(f"RDKit rejects the molecule: {' '.join(str(exc).split())}", source,
                          where) from None
    return mol


# ------------------------------------------------------------------------------ conversion
def from_rdkit(mol, conf_id: int = -1, source: str | None = None) -> AtomGraph:
    """RDKit ``Mol`` with a 3D conformer -> :class:`AtomGraph` (non-periodic), with bonds.

    Args:
        mol: a sanitized RDKit molecule; all its atoms (explicit H included) become nodes.
        conf_id: which conformer to use (default: the first).
        source: ``"file@frame"`` for error messages.
    """
    Chem = _chem()
    src, where = source, None
    if source and "@" in source:
        src, frame = source.rsplit("@", 1)
        where = f"frame {frame}"
    if mol.GetNumConformers() == 0:
        raise EqtoolError("molecule has no coordinates (embed it first, e.g. from SMILES)", src,
                          where)
    conf = mol.GetConformer(conf_id)
    if not conf.Is3D() and mol.GetNumAtoms() > 1:
        raise EqtoolError("molecule has 2D coordinates only; eqtool needs a 3D conformer", src,
                          where)
    kek = Chem.Mol(mol)
    try:
        Chem.Kekulize(kek, clearAromaticFlags=True)
    except Exception:  # no Kekulé form: keep aromatic bonds (order code 4)
        kek = mol
    codes = _bond_types()
    rows = []
    for bond in kek.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        order = codes.get(bond.GetBondType())
        if order is None:
            raise EqtoolError(f"bond {i}-{j} has unsupported type {bond.GetBondType()}", src,
                              where)
        if order != BOND_DATIVE and i > j:
            i, j = j, i
        rows.append((i, j, order))
    charges = np.array([a.GetFormalCharge() for a in mol.GetAtoms()], dtype=np.int64)
    info: dict = {"bonds": np.array(rows, dtype=np.int64).reshape(-1, 3),
                  "charge": int(charges.sum())}
    if charges.any():
        info["formal_charges"] = charges
    try:
        info["smiles"] = Chem.MolToSmiles(Chem.RemoveHs(mol))
    except Exception:  # RemoveHs can fail on odd valences; fall back to the full molecule
        info["smiles"] = Chem.MolToSmiles(mol)
    labels = {}
    for name in mol.GetPropNames():
        value = mol.GetProp(name)
        if name == "energy":
            try:
                labels[K.ENERGY] = np.asarray(float(value))
            except ValueError:
                raise EqtoolError(f"SDF property 'energy' is not a number: {value!r}", src,
                                  where) from None
        elif name not in _RESERVED:
            info[name] = value
    if mol.HasProp("_Name") and mol.GetProp("_Name").strip():
        info["name"] = mol.GetProp("_Name").strip()
    positions = np.array(conf.GetPositions(), dtype=np.float64).reshape(-1, 3)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    return AtomGraph(positions=positions, atomic_numbers=numbers, labels=labels, info=info,
                     source=source)


def to_rdkit(graph: AtomGraph):
    """:class:`AtomGraph` (molecule) -> sanitized RDKit ``Mol`` with one 3D conformer.

    Bonds come from ``info["bonds"]`` (see module docstring) when present, else are perceived
    with ``rdkit.Chem.rdDetermineBonds.DetermineBonds`` using the total charge
    ``info["charge"]`` (default 0). Formal charges come from ``info["formal_charges"]``.
    ``info["name"]`` becomes the title and the energy label the property ``energy`` (eV).

    Raises:
        EqtoolError: for a periodic graph, malformed ``info["bonds"]``, failed bond perception
            or a molecule RDKit cannot sanitize.
    """
    Chem = _chem()
    src = graph.source
    if graph.is_periodic:
        raise EqtoolError("a periodic structure cannot be converted to an RDKit molecule", src)
    n = graph.n_atoms
    formal = graph.info.get("formal_charges")
    formal = np.zeros(n, dtype=np.int64) if formal is None else np.asarray(formal).reshape(-1)
    if len(formal) != n:
        raise EqtoolError(f"info['formal_charges'] has {len(formal)} entries for {n} atoms", src)
    bonds = graph.info.get("bonds")
    explicit_h = bonds is None or bool((graph.atomic_numbers == 1).any())
    mol = Chem.RWMol()
    for z, q in zip(graph.atomic_numbers, formal, strict=True):
        atom = Chem.Atom(int(z))
        atom.SetFormalCharge(int(q))
        atom.SetNoImplicit(explicit_h)  # all H are nodes; no H is invented
        mol.AddAtom(atom)
    conf = Chem.Conformer(n)
    for i, p in enumerate(graph.positions):
        conf.SetAtomPosition(i, p.tolist())
    conf.Set3D(True)
    mol.AddConformer(conf, assignId=True)
    if bonds is not None:
        _add_bonds(mol, np.asarray(bonds), n, src)
    else:
        from rdkit import rdBase
        from rdkit.Chem import rdDetermineBonds

        charge = int(graph.info.get("charge", 0))
        try:
            with rdBase.CaptureErrorLog():
                rdDetermineBonds.DetermineBonds(mol, charge=charge)
        except Exception as exc:  # perception failed: say how to fix it
            raise EqtoolError(f"cannot perceive bonds with total charge {charge} "
                              f"({' '.join(str(exc).split())}); set info['bonds'] or "
                              "info['charge']", src) from None
    mol = mol.GetMol()
    _sanitize(mol, src)
    if graph.info.get("name"):
        mol.SetProp("_Name", str(graph.info["name"]))
    if K.ENERGY in graph.labels:
        mol.SetProp("energy", repr(float(graph.labels[K.ENERGY])))
    return mol


def _add_bonds(mol, bonds: np.ndarray, n: int, src: str | None) -> None:
    types = {v: k for k, v in _bond_types().items()}
    if bonds.ndim != 2 or bonds.shape[1] != 3 or bonds.dtype.kind not in "iu":
        raise EqtoolError(f"info['bonds'] must be an int array [n_bonds, 3], got shape "
                          f"{bonds.shape}", src)
    for i, j, order in bonds.tolist():
        if not (0 <= i < n and 0 <= j < n) or i == j:
            raise EqtoolError(f"info['bonds'] has a bad atom pair ({i}, {j}) for {n} atoms", src)
        if order not in types:
            raise EqtoolError(f"info['bonds'] has unknown bond order code {order} "
                              "(use 1, 2, 3, 4 or 9)", src)
        mol.AddBond(int(i), int(j), types[order])
        if order == BOND_AROMATIC:
            mol.GetBondBetweenAtoms(int(i), int(j)).SetIsAromatic(True)
            mol.GetAtomWithIdx(int(i)).SetIsAromatic(True)
            mol.GetAtomWithIdx(int(j)).SetIsAromatic(True)


# ------------------------------------------------------------------------------------ SMILES
def smiles_to_graph(smiles: str, seed: int = DEFAULT_SEED) -> AtomGraph:
    """SMILES -> 3D molecule: RDKit ``AddHs``, ETKDGv3 embedding, MMFF94 optimisation.

    Embedding is deterministic for a given ``seed``; if ETKDG fails it is retried once from
    random coordinates. MMFF is used when it has parameters for every atom, else UFF, else the
    ETKDG geometry is kept. The force-field energy is not stored as a label.

    Raises:
        EqtoolError: if RDKit rejects the SMILES or no 3D embedding is found.
    """
    from rdkit import rdBase
    from rdkit.Chem import AllChem

    Chem = _chem()
    src = f"smiles:{smiles}"
    with rdBase.CaptureErrorLog() as cap:
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise EqtoolError(f"RDKit rejects this SMILES: "
                          f"{_rdkit_message(cap.messages, 'cannot parse')}", src)
    if mol.GetNumAtoms() == 0:
        raise EqtoolError("SMILES has no atoms", src)
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    with rdBase.CaptureErrorLog():
        status = AllChem.EmbedMolecule(mol, params)
        if status < 0:
            params.useRandomCoords = True
            status = AllChem.EmbedMolecule(mol, params)
    if status < 0:
        raise EqtoolError("RDKit could not embed this molecule in 3D (ETKDG failed)", src)
    with rdBase.CaptureErrorLog():
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
        elif AllChem.UFFHasAllMoleculeParams(mol):
            AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    return from_rdkit(mol, source=f"{src}@0")


# ------------------------------------------------------------------------------------- files
def _records(path: Path, kind: str) -> list:
    """Lazy record accessors for sdf / mol / mol2: a list of ``() -> (Mol | None)``."""
    Chem = _chem()
    if kind == "sdf":
        supplier = Chem.SDMolSupplier(str(path), sanitize=True, removeHs=False)
        return [lambda k=k: supplier[k] for k in range(len(supplier))]
    text = path.read_text(encoding="utf-8", errors="replace")
    if kind == "mol":
        return [lambda: Chem.MolFromMolBlock(text, sanitize=True, removeHs=False)]
    blocks = ["@<TRIPOS>MOLECULE" + b for b in text.split("@<TRIPOS>MOLECULE")[1:]]
    return [lambda b=b: Chem.MolFromMol2Block(b, sanitize=True, removeHs=False) for b in blocks]


def read_rdkit(path: str | Path, select, kind: str) -> list[AtomGraph]:
    """Read ``.sdf`` (many records), ``.mol`` (one) or ``.mol2`` (many) with RDKit.

    Args:
        path: an existing file.
        select: ``select(n_frames) -> list[int]`` picks absolute record numbers.
        kind: ``"sdf"``, ``"mol"`` or ``"mol2"``.
    """
    from rdkit import rdBase

    path = Path(path)
    if path.stat().st_size == 0 or not path.read_bytes().strip():
        raise EqtoolError("file is empty", str(path))
    with rdBase.CaptureErrorLog():
        records = _records(path, kind)
    if not records:
        raise EqtoolError(f"no molecules found (read as {kind})", str(path))
    graphs = []
    for f in select(len(records)):
        with rdBase.CaptureErrorLog() as cap:
            try:
                mol = records[f]()
            except Exception as exc:  # RDKit raises for some malformed records
                mol, cap_text = None, str(exc)
            else:
                cap_text = ""
        if mol is None:
            msg = _rdkit_message(cap.messages + "\n" + cap_text, "cannot parse this record")
            raise EqtoolError(f"RDKit cannot read this {kind} record: {msg}", str(path),
                              f"frame {f}")
        graphs.append(from_rdkit(mol, source=f"{path}@{f}"))
    return graphs


def write_sdf(path: str | Path, graphs: Sequence[AtomGraph], v3000: bool = False) -> None:
    """Write molecules to SDF (atomically), bonds from ``info["bonds"]`` or perceived.

    V2000 (default, most widely read) stores coordinates with 4 decimals (1e-4 Å);
    ``v3000=True`` stores 6 decimals.
    """
    Chem = _chem()
    mols = []
    for k, graph in enumerate(graphs):
        try:
            mols.append(to_rdkit(graph))
        except EqtoolError as exc:
            origin = f" (structure from {graph.source})" if graph.source else ""
            raise EqtoolError(exc.message + origin, str(path), f"frame {k}") from None
    buffer = io.StringIO()
    writer = Chem.SDWriter(buffer)
    writer.SetForceV3000(v3000)
    for mol in mols:
        writer.write(mol)
    writer.close()
    with atomic_write(path, "w") as fh:
        fh.write(buffer.getvalue())
