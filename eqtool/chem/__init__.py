"""Chemistry of molecules: bond perception, valence stability, RDKit metrics, SDF output.

Typical use (EDM's generation metrics)::

    from eqtool.chem import molecule_metrics, write_sdf
    summary = molecule_metrics(graphs, train_smiles=train)   # fractions in [0, 1]
    write_sdf("mols.sdf", graphs)                            # with perceived bonds
"""

from eqtool.chem.bonds import MARGINS_PM, bond_order_matrix, perceive_bonds
from eqtool.chem.metrics import MoleculeReport, analyze_molecule, analyze_sample, molecule_metrics, summarize
from eqtool.chem.rdkit_metrics import (
    build_mol,
    canonical_smiles,
    mol_smiles,
    novelty,
    smiles_from_structures,
    uniqueness,
    validity,
)
from eqtool.chem.sdf import sdf_block, write_sdf
from eqtool.chem.stability import ALLOWED_VALENCES, StabilityResult, atom_stability

__all__ = [
    "MARGINS_PM", "bond_order_matrix", "perceive_bonds",
    "ALLOWED_VALENCES", "StabilityResult", "atom_stability",
    "build_mol", "mol_smiles", "canonical_smiles", "smiles_from_structures", "validity", "uniqueness",
    "novelty",
    "MoleculeReport", "analyze_molecule", "analyze_sample", "molecule_metrics", "summarize",
    "sdf_block", "write_sdf",
]
