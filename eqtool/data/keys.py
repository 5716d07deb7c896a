"""Field names of the flat batch dict and the level each field lives on.

The registry :data:`FIELDS` is the one place that says how a field is batched:

* ``node``   -- one row per atom, concatenated over systems            (e.g. forces ``[N, 3]``)
* ``edge``   -- one row per edge, concatenated over systems            (e.g. edge_shift ``[E, 3]``)
* ``system`` -- one row per system, stacked                            (e.g. energy ``[B]``)
* ``pair``   -- one row per ordered atom pair (i, j) of a system, i.e. ``n_i**2`` rows per system,
  row-major over (i, j); concatenated over systems (Hamiltonian blocks, pair masks)

Units: lengths Å, energies eV, forces eV/Å, stress eV/Å³ with ASE's sign convention
(``stress = (1/V) dE/dstrain``; negative under compression), cells as row vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "POSITIONS", "ATOMIC_NUMBERS", "BATCH", "N_ATOMS", "CELL", "PBC", "EDGE_INDEX", "EDGE_SHIFT",
    "ENERGY", "ENERGIES", "FORCES", "STRESS", "VIRIAL", "CHARGES", "MAGMOMS", "DIFFUSION_TIME",
    "NODE_MASK", "HAMILTONIAN", "HAMILTONIAN_BASELINE", "OVERLAP", "Field", "FIELDS", "level_of",
    "STRUCTURE_KEYS",
]

# structure
POSITIONS = "positions"  # [N, 3] Å
ATOMIC_NUMBERS = "atomic_numbers"  # [N] long
BATCH = "batch"  # [N] long, system index of each atom
N_ATOMS = "n_atoms"  # [B] long
CELL = "cell"  # [B, 3, 3] Å, row vectors
PBC = "pbc"  # [B, 3] bool
EDGE_INDEX = "edge_index"  # [2, E] long, row 0 = sender j, row 1 = receiver i (message j -> i)
EDGE_SHIFT = "edge_shift"  # [E, 3] integer cell shifts: vec = pos[sender] - pos[receiver] + shift @ cell

# labels / outputs
ENERGY = "energy"  # [B] eV
ENERGIES = "energies"  # [N] eV, per-atom energies
FORCES = "forces"  # [N, 3] eV/Å
STRESS = "stress"  # [B, 3, 3] eV/Å³, ASE sign
VIRIAL = "virial"  # [B, 3, 3] eV
CHARGES = "charges"  # [N] e
MAGMOMS = "magmoms"  # [N] µB
DIFFUSION_TIME = "diffusion_time"  # [B] in [0, 1]
NODE_MASK = "node_mask"  # [N] bool, e.g. ligand atoms in a complex
HAMILTONIAN = "hamiltonian"  # pair level: [sum n_i^2, max_ao, max_ao] Hartree, AO blocks
OVERLAP = "overlap"  # pair level, like HAMILTONIAN
HAMILTONIAN_BASELINE = "hamiltonian_baseline"  # pair level, Hartree: a model input (eqtool.dft.baseline)


@dataclass(frozen=True)
class Field:
    """How a field is stored and batched.

    Attributes:
        level: ``"node"``, ``"edge"``, ``"system"`` or ``"pair"``.
        dtype: ``"float"`` (follows the model dtype), ``"int"`` or ``"bool"``.
        unit: unit string for docs and HDF5 attributes.
    """

    level: str
    dtype: str = "float"
    unit: str = ""


FIELDS: dict[str, Field] = {
    POSITIONS: Field("node", "float", "Å"),
    ATOMIC_NUMBERS: Field("node", "int"),
    BATCH: Field("node", "int"),
    N_ATOMS: Field("system", "int"),
    CELL: Field("system", "float", "Å"),
    PBC: Field("system", "bool"),
    EDGE_INDEX: Field("edge", "int"),
    EDGE_SHIFT: Field("edge", "int"),
    ENERGY: Field("system", "float", "eV"),
    ENERGIES: Field("node", "float", "eV"),
    FORCES: Field("node", "float", "eV/Å"),
    STRESS: Field("system", "float", "eV/Å^3"),
    VIRIAL: Field("system", "float", "eV"),
    CHARGES: Field("node", "float", "e"),
    MAGMOMS: Field("node", "float", "µB"),
    DIFFUSION_TIME: Field("system", "float"),
    NODE_MASK: Field("node", "bool"),
    HAMILTONIAN: Field("pair", "float", "Hartree"),
    OVERLAP: Field("pair", "float"),
    HAMILTONIAN_BASELINE: Field("pair", "float", "Hartree"),
}

# keys every graph carries; everything else is an optional label
STRUCTURE_KEYS = (POSITIONS, ATOMIC_NUMBERS, CELL, PBC)


def level_of(key: str) -> str:
    """Return the level of a registered field; unknown keys raise ``KeyError`` naming the key."""
    try:
        return FIELDS[key].level
    except KeyError:
        raise KeyError(f"field {key!r} is not registered in eqtool.data.keys.FIELDS") from None
