"""pymatgen conversion: ``Structure``/``Molecule`` <-> :class:`AtomGraph`, and pymatgen's CIF reader.

Conventions: the lattice matrix is the ASE cell (row vectors, Å); Cartesian coordinates in Å.
Per-site ``forces`` / ``magmom`` / ``charge`` site properties map to the forces / magmoms /
charges labels; ``properties["energy"]`` (eV) and ``properties["stress"]`` (3x3 eV/Å³, ASE sign)
map to the energy and stress labels. Molecule charge and spin multiplicity go to
``info["charge"]`` and ``info["spin_multiplicity"]``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from eqtool.data import keys as K
from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError

__all__ = ["from_pymatgen", "to_pymatgen", "read_pymatgen_cif"]

_SITE_LABELS = {"forces": K.FORCES, "magmom": K.MAGMOMS, "charge": K.CHARGES}


def _import_pymatgen():
    try:
        import pymatgen.core as pmg
    except ImportError:  # optional dependency
        raise EqtoolError("pymatgen is not installed; install it with `pip install pymatgen`",
                          "pymatgen") from None
    return pmg


def from_pymatgen(obj, source: str | None = None) -> AtomGraph:
    """pymatgen ``Structure`` (periodic) or ``Molecule`` -> :class:`AtomGraph`.

    Raises:
        EqtoolError: for disordered (partial occupancy) sites or another object type.
    """
    pmg = _import_pymatgen()
    where = source or type(obj).__name__
    if not isinstance(obj, (pmg.IStructure, pmg.IMolecule)):
        raise EqtoolError(f"expected a pymatgen Structure or Molecule, got {type(obj).__name__}",
                          where)
    if not obj.is_ordered:
        bad = next(i for i, site in enumerate(obj) if not site.is_ordered)
        raise EqtoolError(f"site {bad} is disordered ({obj[bad].species}); eqtool needs one "
                          "element per site", where)
    numbers = [site.specie.Z for site in obj]
    labels: dict[str, np.ndarray] = {}
    for prop, key in _SITE_LABELS.items():
        values = obj.site_properties.get(prop)
        if values is not None and all(v is not None for v in values):
            labels[key] = np.asarray(values, dtype=np.float64)
    props = dict(getattr(obj, "properties", None) or {})
    if props.get("energy") is not None:
        labels[K.ENERGY] = np.asarray(float(props["energy"]))
    if props.get("stress") is not None:
        labels[K.STRESS] = np.asarray(props["stress"], dtype=np.float64).reshape(3, 3)
    info = {k: v for k, v in props.items() if k not in ("energy", "stress")}
    if isinstance(obj, pmg.IStructure):
        cell = np.array(obj.lattice.matrix, dtype=np.float64)
        pbc = np.array(obj.lattice.pbc, dtype=bool)
        if obj.charge:
            info["charge"] = obj.charge
    else:
        cell, pbc = np.zeros((3, 3)), np.zeros(3, dtype=bool)
        info["charge"] = obj.charge
        info["spin_multiplicity"] = obj.spin_multiplicity
    return AtomGraph(positions=np.array(obj.cart_coords, dtype=np.float64), atomic_numbers=numbers,
                     cell=cell, pbc=pbc, labels=labels, info=info, source=source)


def to_pymatgen(graph: AtomGraph):
    """:class:`AtomGraph` -> pymatgen ``Structure`` if any direction is periodic, else ``Molecule``.

    Labels become site properties / ``properties`` as described in the module docstring.
    """
    pmg = _import_pymatgen()
    site_properties = {}
    for prop, key in _SITE_LABELS.items():
        if key in graph.labels:
            site_properties[prop] = np.asarray(graph.labels[key]).tolist()
    properties = {}
    if K.ENERGY in graph.labels:
        properties["energy"] = float(graph.labels[K.ENERGY])
    if K.STRESS in graph.labels:
        properties["stress"] = np.asarray(graph.labels[K.STRESS], dtype=np.float64).tolist()
    species = graph.atomic_numbers.tolist()
    if graph.is_periodic:
        lattice = pmg.Lattice(graph.cell, pbc=tuple(bool(p) for p in graph.pbc))
        return pmg.Structure(lattice, species, graph.positions, coords_are_cartesian=True,
                             site_properties=site_properties or None,
                             properties=properties or None,
                             charge=graph.info.get("charge"))
    spin = graph.info.get("spin_multiplicity")
    return pmg.Molecule(species, graph.positions, charge=float(graph.info.get("charge", 0.0)),
                        spin_multiplicity=None if spin is None else int(spin),
                        site_properties=site_properties or None, properties=properties or None,
                        charge_spin_check=False)


def read_pymatgen_cif(path: str | Path, select) -> list[AtomGraph]:
    """Read every data block of a CIF with pymatgen's ``CifParser`` (conventional cells).

    Args:
        path: an existing CIF file.
        select: ``select(n_frames) -> list[int]`` picks absolute frame (data block) numbers.
    """
    _import_pymatgen()
    from pymatgen.io.cif import CifParser

    path = Path(path)
    if path.stat().st_size == 0:
        raise EqtoolError("file is empty", str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns per block; failures raise below
            structures = CifParser(str(path)).parse_structures(primitive=False, on_error="raise")
    except Exception as exc:  # wrap any pymatgen failure, keep its message
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise EqtoolError(f"pymatgen cannot read this CIF: {text}", str(path)) from None
    if not structures:
        raise EqtoolError("no structures found (pymatgen CIF)", str(path))
    return [from_pymatgen(structures[f], source=f"{path}@{f}") for f in select(len(structures))]
