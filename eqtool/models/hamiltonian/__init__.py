"""DFT Hamiltonian models (QHNet-class) with SPHNet sparse gates.

Kept import-light: ``eqtool.config.schema`` imports :mod:`.config` from here.
"""
