"""DFT helpers for Hamiltonian learning (usable without a model).

* AO layout of def2-SVP in PySCF order and block <-> matrix conversion (:mod:`.basis`)
* orbital energies by symmetric orthogonalisation (:mod:`.eigen`)
* QH9/QHNet metrics (:mod:`.metrics`)
* PySCF glue: molecules, RKS, SCF from a predicted guess (:mod:`.pyscf_tools`; needs ``eqtool[dft]``)
* the Δ-learning baseline ``F0`` of Hamiltonian models (:mod:`.baseline`; needs ``eqtool[dft]``)
* writing Hamiltonian datasets in the eqtool HDF5 format (:mod:`.h5`)
"""

from eqtool.dft.basis import (
    AO_COUNTS,
    AO_IRREPS,
    BASIS,
    MAX_AO,
    ao_counts,
    ao_index,
    ao_slices,
    blocks_from_matrix,
    matrix_from_blocks,
)
from eqtool.dft.eigen import orbital_energies
from eqtool.dft.h5 import AO_ORDER, hamiltonian_graph, write_hamiltonian_h5
from eqtool.dft.metrics import METRIC_UNITS, aggregate_metrics, frontier, hamiltonian_metrics
from eqtool.dft.pyscf_tools import RKSResult, build_mol, run_rks, scf_from_guess

__all__ = [
    "AO_COUNTS", "AO_IRREPS", "AO_ORDER", "BASIS", "MAX_AO", "METRIC_UNITS", "RKSResult",
    "aggregate_metrics", "ao_counts", "ao_index", "ao_slices", "blocks_from_matrix", "build_mol",
    "frontier", "hamiltonian_graph", "hamiltonian_metrics", "matrix_from_blocks", "orbital_energies",
    "run_rks", "scf_from_guess", "write_hamiltonian_h5",
]
