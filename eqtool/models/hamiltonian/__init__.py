"""DFT Hamiltonian models (QHNet-class) with SPHNet sparse gates.

Kept import-light: ``eqtool.config.schema`` imports :mod:`.config` from here, so nothing below is
imported eagerly. Modules:

* :mod:`.basis` -- AO bases (def2-SVP), PySCF <-> e3nn change of basis, block-wise Wigner-D
  (``ao_rotation``).
* :mod:`.expansion` -- ``BlockExpansion``: features -> ``[P, 14, 14]`` AO blocks (QHNet eq. 7).
* :mod:`.qhnet` -- ``QHNet`` (registry name ``"qhnet"``): ``batch -> {"hamiltonian": [sum n^2, 14, 14]}``.
* :mod:`.predict` -- ``predict_blocks`` / ``predict_matrices`` for whole molecules.
* :mod:`.config` -- the ``loss`` section of a ``task: hamiltonian`` recipe.

Sparse gates live in :mod:`eqtool.nn.sparse_gate`; training in :mod:`eqtool.tasks.hamiltonian`.
"""
