"""Docking: receptor and ligand preparation, search boxes, Vina search/refinement, model poses, RMSD.

Needs the ``dock`` extra (``pip install 'eqtool[dock]'``: vina, meeko, gemmi; posebusters for the
benchmark). The learned model lives in :mod:`eqtool.models.docking`; this package calls it through
``model_poses(model, receptor_pdb, ligand, center, num_poses, seed)``.
"""

from eqtool.dock.box import Box, blind_box, box_around, box_from_ligand_file, check_box_has_receptor
from eqtool.dock.engine import Pose, VinaEngine, ligand_pdbqt, set_positions
from eqtool.dock.ligands import Ligand, prepare_ligand, random_pose, read_ligands
from eqtool.dock.pipeline import METHODS, DockResult, dock_ligands, write_failures, write_poses
from eqtool.dock.receptor import Receptor, prepare_receptor
from eqtool.dock.rmsd import symmetry_rmsd

__all__ = [
    "Box", "blind_box", "box_around", "box_from_ligand_file", "check_box_has_receptor",
    "Pose", "VinaEngine", "ligand_pdbqt", "set_positions",
    "Ligand", "prepare_ligand", "random_pose", "read_ligands",
    "METHODS", "DockResult", "dock_ligands", "write_failures", "write_poses",
    "Receptor", "prepare_receptor",
    "symmetry_rmsd",
]
