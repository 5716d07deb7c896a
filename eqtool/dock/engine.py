"""AutoDock Vina through the ``vina`` package: global search, local refinement and scoring.

One :class:`VinaEngine` per receptor; affinity maps are computed once per box (for every atom type)
and reused for every ligand docked in that box. Ligands go in and poses come out as RDKit molecules in
the input atom order (meeko writes the PDBQT and reads the poses back).
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from eqtool.dock._deps import need
from eqtool.dock.box import Box, box_around
from eqtool.dock.receptor import Receptor
from eqtool.errors import EqtoolError

__all__ = ["Pose", "VinaEngine", "ligand_pdbqt", "set_positions"]


@dataclass
class Pose:
    """A ligand pose in the receptor frame.

    Attributes:
        mol: RDKit molecule with hydrogens and one conformer (Å), atoms in the input order.
        score: Vina score (kcal/mol; lower is better), None if not scored.
        properties: extra SDF properties (``vina_inter``, ``vina_intra``, ``model_rank``, ...).
    """

    mol: object = field(repr=False)
    score: float | None = None
    properties: dict = field(default_factory=dict)


def set_positions(mol, positions: np.ndarray):
    """A copy of ``mol`` whose only conformer has ``positions [N, 3]`` Å."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    conf = Chem.Conformer(out.GetNumAtoms())
    for i, p in enumerate(np.asarray(positions, dtype=float)):
        conf.SetAtomPosition(i, Point3D(*p))
    conf.Set3D(True)
    out.AddConformer(conf, assignId=True)
    return out


def ligand_pdbqt(mol) -> str:
    """Vina ligand PDBQT (meeko) of ``mol`` (hydrogens and a 3D conformer); EqtoolError if untypable."""
    meeko = need("meeko")
    from rdkit import rdBase

    try:
        with rdBase.BlockLogs():
            setups = meeko.MoleculePreparation().prepare(mol)
            text, ok, err = meeko.PDBQTWriterLegacy.write_string(setups[0])
    except Exception as exc:  # noqa: BLE001 -- meeko raises bare RuntimeError/ValueError/KeyError
        raise EqtoolError(f"meeko cannot prepare the ligand for Vina: {' '.join(str(exc).split())}",
                          source="ligand") from exc
    if not ok:
        raise EqtoolError(f"meeko cannot write the ligand PDBQT: {' '.join(str(err).split())}",
                          source="ligand")
    return text


def _element_graph(mol):
    """``mol`` with every bond single and no aromaticity or charges (graph matching by element only)."""
    from rdkit import Chem

    rw = Chem.RWMol()
    for atom in mol.GetAtoms():
        new = Chem.Atom(atom.GetAtomicNum())
        new.SetNoImplicit(True)
        rw.AddAtom(new)
    for bond in mol.GetBonds():
        rw.AddBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), Chem.BondType.SINGLE)
    out = rw.GetMol()
    out.UpdatePropertyCache(strict=False)
    return out


def _read_poses(pdbqt: str, template) -> list[np.ndarray]:
    """Positions ``[N, 3]`` Å (in ``template``'s atom order, hydrogens included) of every pose in a
    Vina output PDBQT."""
    meeko = need("meeko")
    from rdkit import rdBase

    with rdBase.BlockLogs():
        pdbqt_mol = meeko.PDBQTMolecule(pdbqt, skip_typing=True)
        mols = meeko.RDKitMolCreate.from_pdbqt_mol(pdbqt_mol)
    out_mol = mols[0]
    if out_mol is None or out_mol.GetNumAtoms() != template.GetNumAtoms():
        raise EqtoolError("could not map Vina's poses back onto the input molecule", source="vina")
    match = template.GetSubstructMatch(out_mol, useChirality=False)
    if len(match) != template.GetNumAtoms():  # aromaticity/tautomer perceived differently: elements only
        match = _element_graph(template).GetSubstructMatch(_element_graph(out_mol))
    if len(match) != template.GetNumAtoms():
        raise EqtoolError("could not map Vina's poses back onto the input molecule", source="vina")
    order = np.asarray(match)
    poses = []
    for conf in out_mol.GetConformers():
        pos = np.empty((template.GetNumAtoms(), 3))
        pos[order] = conf.GetPositions()
        poses.append(pos)
    return poses


def _key(box: Box) -> tuple:
    return tuple(round(x, 3) for x in box.center + box.size)


class VinaEngine:
    """Vina docking against one receptor.

    Args:
        receptor: the prepared receptor.
        cpu: threads for Vina's search (0: all cores).
        seed: random seed of every search (Vina reseeds each ``dock`` call, so a ligand's result does
            not depend on the ligands docked before it; Vina's own "0 = random" is never used).
        scoring: ``"vina"`` or ``"vinardo"``.
        max_maps: how many boxes' maps to keep in memory.
        all_types: compute each box's maps for every Vina atom type once (best for many ligands);
            False computes only the current ligand's types (faster for a single ligand).
    """

    def __init__(self, receptor: Receptor, cpu: int = 0, seed: int = 0, scoring: str = "vina",
                 max_maps: int = 2, all_types: bool = True):
        self.receptor = receptor
        self.cpu = int(cpu)
        self.seed = int(seed) % (2**31 - 2) + 1
        self.scoring = scoring
        self.max_maps = max_maps
        self.all_types = all_types
        self._tmp = tempfile.TemporaryDirectory(prefix="eqtool-dock-")
        self._receptor_file = os.path.join(self._tmp.name, "receptor.pdbqt")
        with open(self._receptor_file, "w", encoding="utf-8") as fh:
            fh.write(receptor.pdbqt)
        self._maps: OrderedDict[tuple, object] = OrderedDict()

    def close(self) -> None:
        self._maps.clear()
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _vina(self, box: Box, pdbqt: str):
        """A Vina object with this box's maps (cached) and the ligand ``pdbqt`` set."""
        vina = need("vina")
        types = None if self.all_types else frozenset(
            ln[77:79].strip() for ln in pdbqt.splitlines() if ln.startswith(("ATOM", "HETATM")))
        key = (_key(box), types)
        if key in self._maps:
            self._maps.move_to_end(key)
            v = self._maps[key]
        else:
            v = vina.Vina(sf_name=self.scoring, cpu=self.cpu, seed=self.seed, verbosity=0)
            v.set_receptor(self._receptor_file)
            if types is not None:  # maps for this ligand's atom types only
                _set_ligand(v, pdbqt)
            v.compute_vina_maps(center=list(box.center), box_size=list(box.size))
            self._maps[key] = v
            while len(self._maps) > self.max_maps:
                self._maps.popitem(last=False)
        _set_ligand(v, pdbqt)
        return v

    def dock(self, mol, box: Box, num_poses: int = 9, exhaustiveness: int = 8,
             energy_range: float = 3.0) -> list[Pose]:
        """Global Vina search for ``mol`` (hydrogens, 3D conformer) in ``box``; best pose first."""
        v = self._vina(box, ligand_pdbqt(mol))
        try:
            v.dock(exhaustiveness=int(exhaustiveness), n_poses=max(int(num_poses), 1) * 2)
            text = v.poses(n_poses=int(num_poses), energy_range=energy_range)
            energies = v.energies(n_poses=int(num_poses), energy_range=energy_range)  # [P, 5] kcal/mol
        except RuntimeError as exc:
            raise EqtoolError(f"Vina failed: {' '.join(str(exc).split())}", source="vina") from exc
        poses = []
        for pos, e in zip(_read_poses(text, mol), energies, strict=True):
            poses.append(Pose(set_positions(mol, pos), float(e[0]),
                              {"vina_inter": float(e[1]), "vina_intra": float(e[2])}))
        return poses

    def refine(self, mol, box: Box | None = None, rounds: int = 4, max_steps: int = 0) -> Pose:
        """Vina local optimisation (BFGS, no global search) of the pose in ``mol``'s conformer.

        ``rounds`` successive optimisations (each ``max_steps`` BFGS steps, 0 = Vina's default) continue
        from each other; the pose with the best Vina score among them is kept (Vina's optimiser also
        weighs the ligand's internal energy, so its score is not monotone over rounds). The maps are
        those of ``box`` if it holds every ligand atom, else of a box around the pose.
        """
        pos = mol.GetConformer().GetPositions()
        if box is None or not box.contains(pos, margin=-1.0).all():
            box = box_around(pos, padding=5.0, min_size=12.0)
        pdbqt = ligand_pdbqt(mol)
        path = os.path.join(self._tmp.name, "refined.pdbqt")
        best = None
        for attempt in range(2):
            v = self._vina(box, pdbqt)
            try:
                for _ in range(max(int(rounds), 1)):
                    v.optimize(max_steps=int(max_steps))
                    e = v.score()  # [total, inter, flex_inter, other, flex_intra, intra, torsions, ...]
                    if best is None or e[0] < best[0]:
                        best = e
                        v.write_pose(path, overwrite=True)
            except RuntimeError as exc:
                # the optimiser pushed the ligand out of the maps: keep the best pose so far, or retry
                # once in a box 10 Å wider than the pose
                if best is None and attempt == 0 and "outside the grid box" in str(exc):
                    box = box_around(pos, padding=10.0, min_size=20.0)
                    continue
                if best is None:
                    raise EqtoolError(f"Vina failed: {' '.join(str(exc).split())}", source="vina") from exc
            break
        with open(path, encoding="utf-8") as fh:
            (new,) = _read_poses(fh.read(), mol)
        terms = {"vina_inter": float(best[1]), "vina_intra": float(best[5])}
        return Pose(set_positions(mol, new), float(best[0]), terms)

    def score(self, mol, box: Box | None = None) -> Pose:
        """Vina score of the pose as it is (no movement)."""
        pos = mol.GetConformer().GetPositions()
        if box is None or not box.contains(pos, margin=-1.0).all():
            box = box_around(pos, padding=5.0, min_size=12.0)
        v = self._vina(box, ligand_pdbqt(mol))
        try:
            e = v.score()
        except RuntimeError as exc:
            raise EqtoolError(f"Vina failed: {' '.join(str(exc).split())}", source="vina") from exc
        return Pose(mol, float(e[0]), {"vina_inter": float(e[1]), "vina_intra": float(e[5])})


def _set_ligand(v, pdbqt: str) -> None:
    try:
        v.set_ligand_from_string(pdbqt)
    except (RuntimeError, TypeError) as exc:
        raise EqtoolError(f"Vina rejects the ligand: {' '.join(str(exc).split())}", source="vina") from exc
