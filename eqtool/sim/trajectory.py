"""Appendable MD trajectories that survive a killed run: HDF5 (eqtool layout) or extxyz.

HDF5 trajectories use the dataset layout of ``docs/hdf5-format.md`` (so
:class:`eqtool.io.hdf5.H5Dataset` and ``eqtool data info`` read them), one system per frame,
plus these labels::

    /atoms/velocities       [N, 3]  f8  Å/fs
    /atoms/forces           [N, 3]  f8  eV/Å
    /systems/energy         [B]     f8  eV   potential energy
    /systems/stress         [B,3,3] f8  eV/Å³ (3D-periodic systems only)
    /systems/step           [B]     i8       MD step of the frame
    /systems/time           [B]     f8  ps
    /systems/temperature    [B]     f8  K
    /systems/kinetic_energy [B]     f8  eV

Unlike :class:`eqtool.io.hdf5.H5Writer` (which writes a temp file and renames it at the end),
frames are appended in place and flushed one by one. The ``n_atoms`` row of a frame is written
last, so a frame is complete exactly when its ``n_atoms`` row exists; on reopening, rows of an
incomplete last frame are cut off. ``content_hash`` is written when the writer is closed.

extxyz trajectories hold one frame per block (velocities as a ``velocities`` column in Å/fs,
``step``/``time_ps``/``temperature``/``kinetic_energy`` in the comment line); a truncated last
block is cut off on reopening.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqtool.errors import EqtoolError

__all__ = ["Frame", "H5TrajectoryWriter", "ExtxyzTrajectoryWriter", "open_trajectory",
           "read_frames", "TRAJECTORY_FORMATS"]

TRAJECTORY_FORMATS = {".h5": "h5", ".hdf5": "h5", ".extxyz": "extxyz", ".xyz": "extxyz"}


@dataclass
class Frame:
    """One MD frame. Units: Å, Å/fs, eV, eV/Å, eV/Å³, ps, K."""

    step: int
    time_ps: float
    positions: np.ndarray  # [N, 3] Å
    numbers: np.ndarray  # [N]
    cell: np.ndarray  # [3, 3] Å, row vectors
    pbc: np.ndarray  # [3] bool
    velocities: np.ndarray  # [N, 3] Å/fs
    energy: float  # eV, potential
    forces: np.ndarray  # [N, 3] eV/Å
    stress: np.ndarray | None = None  # [3, 3] eV/Å³, ASE sign
    kinetic_energy: float = float("nan")  # eV
    temperature: float = float("nan")  # K


def trajectory_format(path: str | os.PathLike) -> str:
    """``"h5"`` or ``"extxyz"`` from the extension; EqtoolError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in TRAJECTORY_FORMATS:
        raise EqtoolError(f"unknown trajectory extension {suffix or '(none)'!r}; use .h5 (eqtool HDF5) "
                          "or .extxyz", source=str(path))
    return TRAJECTORY_FORMATS[suffix]


# --------------------------------------------------------------------------------------- HDF5
_ATOM_COLS = {"positions": ("<f8", (3,), "Å"), "atomic_numbers": ("|i1", (), ""),
              "velocities": ("<f8", (3,), "Å/fs"), "forces": ("<f8", (3,), "eV/Å")}
_SYS_COLS = {"cell": ("<f8", (3, 3), "Å"), "pbc": ("|b1", (3,), ""), "energy": ("<f8", (), "eV"),
             "step": ("<i8", (), ""), "time": ("<f8", (), "ps"), "temperature": ("<f8", (), "K"),
             "kinetic_energy": ("<f8", (), "eV")}
_STRESS = ("<f8", (3, 3), "eV/Å³")
# committed last, in this order: a frame exists once its n_atoms row is there
_OFFSETS = ("atom_offset", "pair_offset")


class H5TrajectoryWriter:
    """Append :class:`Frame` s to an eqtool HDF5 trajectory, flushing after each frame.

    Args:
        path: the ``.h5`` file.
        append: continue an existing file (incomplete trailing rows are cut off first);
            otherwise a new file is created (an existing one is replaced).
        periodic: store stress (only for a new file; an existing file keeps its layout).
        attrs: extra root attributes for a new file (model, ensemble, timestep, ...).
    """

    def __init__(self, path: str | os.PathLike, append: bool = False, periodic: bool = True,
                 attrs: dict | None = None):
        import h5py

        self.path = Path(path)
        if append:
            try:
                self._f = h5py.File(self.path, "a")
            except OSError as e:
                raise EqtoolError(f"cannot reopen trajectory to continue it ({' '.join(str(e).split())})",
                                  source=str(self.path)) from None
            self._check_and_repair()
        else:
            self._create(periodic, attrs or {})
        self._stress = "systems/stress" in self._f

    # -- layout
    def _create(self, periodic: bool, attrs: dict) -> None:
        import h5py

        from eqtool import __version__
        from eqtool.io.hdf5 import FORMAT, FORMAT_VERSION, UNITS

        f = self._f = h5py.File(self.path, "w")
        units = json.dumps({**UNITS, "velocities": "Å/fs", "time": "ps"}, ensure_ascii=False)
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "eqtool_version": __version__,
                        "units": units,
                        "source": "eqtool md", "level_of_theory": str(attrs.pop("model", "")),
                        "content": "trajectory", "n_systems": 0, "n_atoms": 0})
        for k, v in attrs.items():
            f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
        for g in ("atoms", "systems", "pairs"):
            f.create_group(g)
        cols = {f"atoms/{k}": v for k, v in _ATOM_COLS.items()}
        cols.update({f"systems/{k}": v for k, v in _SYS_COLS.items()})
        if periodic:
            cols["systems/stress"] = _STRESS
        cols["systems/n_atoms"] = ("<i8", (), "")
        for name, (dtype, trail, unit) in cols.items():
            rows = 256 if name.startswith("atoms/") else 64
            d = f.create_dataset(name, shape=(0, *trail), maxshape=(None, *trail), dtype=dtype,
                                 chunks=(rows, *trail))
            if unit:
                d.attrs["unit"] = unit
        for name in _OFFSETS:
            f.create_dataset(f"systems/{name}", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(64,))
        f.flush()

    def _check_and_repair(self) -> None:
        """Cut rows of an incomplete last frame so every dataset ends at the last complete one."""
        f = self._f
        try:
            s, a = f["systems"], f["atoms"]
            n_atoms = s["n_atoms"][:]
            b = len(n_atoms)
            for name in _OFFSETS:
                b = min(b, len(s[name]) - 1)
            sys_names = [k for k in s if k not in ("n_atoms", *_OFFSETS)]
            for name in sys_names:
                b = min(b, len(s[name]))
            atom_off = s["atom_offset"][: b + 1]
            atom_rows = min(len(a[k]) for k in a)
            while b > 0 and atom_off[b] > atom_rows:
                b -= 1
            if b < 0 or (b and not np.array_equal(np.cumsum(n_atoms[:b]), atom_off[1: b + 1])):
                raise KeyError("offsets do not match n_atoms")
        except (KeyError, ValueError) as e:
            raise EqtoolError(f"not an eqtool md trajectory, or damaged beyond repair ({e})",
                              source=str(self.path)) from None
        n = int(atom_off[b])
        for name in s:
            s[name].resize(b + 1 if name in _OFFSETS else b, axis=0)
        for name in a:
            a[name].resize(n, axis=0)
        f.attrs["n_systems"] = b
        f.attrs["n_atoms"] = n
        if "content_hash" in f.attrs:
            del f.attrs["content_hash"]  # stale once we append
        f.flush()

    @property
    def n_frames(self) -> int:
        return int(self._f["systems/n_atoms"].shape[0])

    def _push(self, name: str, value) -> None:
        d = self._f[name]
        value = np.asarray(value, dtype=d.dtype)
        rows = 1 if value.ndim == d.ndim - 1 else value.shape[0]
        d.resize(d.shape[0] + rows, axis=0)
        d[-rows:] = value.reshape(rows, *d.shape[1:])

    def append(self, frame: Frame) -> None:
        """Write ``frame`` and flush; its ``n_atoms`` row is written last (the commit)."""
        f = self._f
        n = len(frame.numbers)
        s = f["systems"]
        b = self.n_frames
        atom0 = int(s["atom_offset"][b])
        pair0 = int(s["pair_offset"][b])
        self._push("atoms/positions", frame.positions)
        self._push("atoms/atomic_numbers", frame.numbers)
        self._push("atoms/velocities", frame.velocities)
        self._push("atoms/forces", frame.forces)
        self._push("systems/cell", frame.cell)
        self._push("systems/pbc", frame.pbc)
        self._push("systems/energy", frame.energy)
        self._push("systems/step", frame.step)
        self._push("systems/time", frame.time_ps)
        self._push("systems/temperature", frame.temperature)
        self._push("systems/kinetic_energy", frame.kinetic_energy)
        if self._stress:
            self._push("systems/stress", np.full((3, 3), np.nan) if frame.stress is None else frame.stress)
        self._push("systems/atom_offset", atom0 + n)
        self._push("systems/pair_offset", pair0 + n * n)
        self._push("systems/n_atoms", n)
        f.attrs["n_systems"] = b + 1
        f.attrs["n_atoms"] = atom0 + n
        f.flush()

    def close(self) -> None:
        """Close and store the ``content_hash`` (so ``H5Dataset.verify`` passes)."""
        import h5py

        from eqtool.io.hdf5 import content_hash

        if self._f is None:
            return
        self._f.close()
        self._f = None
        digest = content_hash(self.path)
        with h5py.File(self.path, "a") as f:
            f.attrs["content_hash"] = digest

    def abandon(self) -> None:
        """Close without finalising (the file stays valid up to its last complete frame)."""
        if self._f is not None:
            self._f.close()
            self._f = None


def _read_h5_frames(path: Path, last_only: bool) -> list[Frame]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise EqtoolError(f"cannot open trajectory ({' '.join(str(e).split())})", source=str(path)) from None
    with f:
        try:
            s, a = f["systems"], f["atoms"]
            n_atoms = s["n_atoms"][:]
            offs = s["atom_offset"][:]
            b = min(len(n_atoms), len(offs) - 1)
            for name in s:
                if name not in ("n_atoms", *_OFFSETS):
                    b = min(b, len(s[name]))
            rows = min(len(a[k]) for k in a)
            while b > 0 and offs[b] > rows:
                b -= 1
            frames = []
            for j in ([b - 1] if last_only and b else range(b)):
                a0, a1 = int(offs[j]), int(offs[j + 1])
                stress = s["stress"][j] if "stress" in s else None
                frames.append(Frame(
                    step=int(s["step"][j]), time_ps=float(s["time"][j]),
                    positions=a["positions"][a0:a1], numbers=a["atomic_numbers"][a0:a1].astype(np.int64),
                    cell=s["cell"][j], pbc=s["pbc"][j].astype(bool), velocities=a["velocities"][a0:a1],
                    energy=float(s["energy"][j]), forces=a["forces"][a0:a1], stress=stress,
                    kinetic_energy=float(s["kinetic_energy"][j]), temperature=float(s["temperature"][j])))
        except (KeyError, ValueError, IndexError) as e:
            raise EqtoolError(f"not an eqtool md trajectory ({e})", source=str(path)) from None
    return frames


# ------------------------------------------------------------------------------------- extxyz
def _frame_atoms(frame: Frame):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms(numbers=frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
    atoms.new_array("velocities", np.asarray(frame.velocities, dtype=np.float64))
    atoms.info.update(step=int(frame.step), time_ps=float(frame.time_ps),
                      temperature=float(frame.temperature), kinetic_energy=float(frame.kinetic_energy))
    results = {"energy": float(frame.energy), "forces": np.asarray(frame.forces)}
    if frame.stress is not None:
        s = np.asarray(frame.stress)
        results["stress"] = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _scan_complete(text: str) -> list[tuple[int, int]]:
    """``[(start_char, end_char), ...]`` of the complete extxyz blocks of ``text``."""
    blocks, pos = [], 0
    while pos < len(text):
        end = text.find("\n", pos)
        if end < 0:
            break
        head = text[pos:end].strip()
        if not head:
            pos = end + 1
            continue
        try:
            n = int(head)
        except ValueError:
            break
        cur, ok = end + 1, True
        for _ in range(n + 1):  # comment line + n atom lines, each ending in a newline
            nxt = text.find("\n", cur)
            if nxt < 0:
                ok = False
                break
            cur = nxt + 1
        if not ok:
            break
        blocks.append((pos, cur))
        pos = cur
    return blocks


class ExtxyzTrajectoryWriter:
    """Append :class:`Frame` s to an extxyz file (one block per frame, flushed each time)."""

    def __init__(self, path: str | os.PathLike, append: bool = False, periodic: bool = True,
                 attrs: dict | None = None):
        self.path = Path(path)
        if append:
            text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
            blocks = _scan_complete(text)
            end = blocks[-1][1] if blocks else 0
            self._n = len(blocks)
            if end < len(text):
                with open(self.path, "r+b") as fh:
                    fh.truncate(len(text[:end].encode("utf-8")))
            self._fh = open(self.path, "a", encoding="utf-8")
        else:
            self._n = 0
            self._fh = open(self.path, "w", encoding="utf-8")

    @property
    def n_frames(self) -> int:
        return self._n

    def append(self, frame: Frame) -> None:
        import ase.io

        buf = io.StringIO()
        ase.io.write(buf, _frame_atoms(frame), format="extxyz")
        self._fh.write(buf.getvalue())
        self._fh.flush()
        self._n += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    abandon = close


def _read_extxyz_frames(path: Path, last_only: bool) -> list[Frame]:
    import ase.io

    text = path.read_text(encoding="utf-8")
    blocks = _scan_complete(text)
    if last_only:
        blocks = blocks[-1:]
    frames = []
    for k, (a, b) in enumerate(blocks):
        try:
            atoms = ase.io.read(io.StringIO(text[a:b]), format="extxyz")
            v = atoms.arrays.get("velocities")
            if v is None:
                raise KeyError("velocities")
            stress = atoms.get_stress(voigt=False) if atoms.pbc.all() and "stress" in atoms.calc.results \
                else None
            frames.append(Frame(
                step=int(atoms.info["step"]), time_ps=float(atoms.info["time_ps"]),
                positions=atoms.get_positions(), numbers=atoms.get_atomic_numbers().astype(np.int64),
                cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy(), velocities=np.asarray(v),
                energy=float(atoms.get_potential_energy()), forces=atoms.get_forces(), stress=stress,
                kinetic_energy=float(atoms.info.get("kinetic_energy", np.nan)),
                temperature=float(atoms.info.get("temperature", np.nan))))
        except Exception as e:  # ASE raises many types; report the block
            raise EqtoolError(f"not an eqtool md trajectory block ({type(e).__name__}: {e})",
                              source=str(path), where=f"frame {k}") from None
    return frames


# ---------------------------------------------------------------------------------------- API
def read_frames(path: str | os.PathLike, last_only: bool = False) -> list[Frame]:
    """Complete frames of an md trajectory (``.h5`` or ``.extxyz``); a truncated tail is ignored."""
    path = Path(path)
    if not path.is_file():
        raise EqtoolError("trajectory not found", source=str(path))
    if trajectory_format(path) == "h5":
        return _read_h5_frames(path, last_only)
    return _read_extxyz_frames(path, last_only)


def open_trajectory(path: str | os.PathLike, append: bool = False, periodic: bool = True,
                    attrs: dict | None = None):
    """A writer for ``path`` by extension: :class:`H5TrajectoryWriter` or :class:`ExtxyzTrajectoryWriter`."""
    cls = H5TrajectoryWriter if trajectory_format(path) == "h5" else ExtxyzTrajectoryWriter
    return cls(path, append=append, periodic=periodic, attrs=attrs)
