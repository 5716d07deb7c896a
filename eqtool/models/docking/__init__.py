"""Docking models (EquiBind-class).

Kept import-light: ``eqtool.config.schema`` imports :mod:`.config` from here.
"""
