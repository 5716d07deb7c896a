"""Read and write structures through ASE: extxyz/xyz, CIF, POSCAR, PDB, ``.traj``, ASE db.

Reading wraps every ASE failure in :class:`~eqtool.errors.EqtoolError` naming the file and,
where known, the frame (0-based) and line (1-based). xyz/extxyz files are first scanned for
their frame layout, so a truncated or garbled frame is reported precisely.

extxyz is written by eqtool itself (not ``ase.io.write``): ASE's writer rounds per-atom columns
to 8 decimals, while eqtool writes every float with 17 significant digits, so positions, cell,
energy, forces and stress read back bit-exact in float64.
"""

from __future__ import annotations

import io
import json
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eqtool.data import keys as K
from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError
from eqtool.io.atomic import atomic_path, atomic_write

__all__ = ["read_ase", "write_extxyz", "write_ase", "graph_from_atoms"]

# ASE names of the per-atom labels eqtool writes as extxyz columns, and back.
_NODE_COLUMNS = {K.FORCES: "forces", K.ENERGIES: "energies", K.CHARGES: "charges",
                 K.MAGMOMS: "magmoms"}
# info keys that the extxyz comment line uses for other things
_RESERVED_INFO = {"energy", "free_energy", "stress", "virial", "forces", "pbc", "lattice",
                  "properties", "energies", "charges", "magmoms"}


# ----------------------------------------------------------------------------------- reading
def graph_from_atoms(atoms, source: str) -> AtomGraph:
    """``ase.Atoms`` -> validated :class:`AtomGraph`.

    numpy scalars in ``info`` become Python scalars, ``info['bonds']`` an int64 ``[n, 3]`` array.
    """
    graph = AtomGraph.from_ase(atoms, source=source)
    graph.info = {k: v.item() if isinstance(v, np.generic) else v for k, v in graph.info.items()}
    if "bonds" in graph.info:
        graph.info["bonds"] = np.asarray(graph.info["bonds"], dtype=np.int64).reshape(-1, 3)
    return graph


def _ase_message(exc: BaseException) -> str:
    """The useful part of an ASE/parser exception, on one line."""
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return f"unknown element symbol {exc.args[0]!r}"
    text = " ".join(str(exc).split())
    for prefix in ("ase.io.extxyz: ",):
        text = text.removeprefix(prefix)
    return text or type(exc).__name__


def _is_blank(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return True
    if size > 4096:
        return False
    return not path.read_bytes().strip()


def _scan_xyz(path: Path, lines: list[str]) -> list[tuple[int, int]]:
    """Frame layout of an xyz/extxyz file: ``[(first_line_index, n_atoms), ...]`` (0-based lines).

    Raises EqtoolError for a bad atom-count line or a frame with fewer atom lines than it says.
    """
    frames: list[tuple[int, int]] = []
    i, n_lines = 0, len(lines)
    while i < n_lines:
        if not lines[i].strip():  # trailing blank lines are fine; blank lines between frames are not
            if all(not ln.strip() for ln in lines[i:]):
                break
            raise EqtoolError("blank line where an atom-count line was expected", str(path),
                              f"frame {len(frames)}, line {i + 1}")
        head = lines[i].split()
        try:
            n_atoms = int(head[0])
            if len(head) != 1 or n_atoms < 0:
                raise ValueError
        except ValueError:
            raise EqtoolError(f"expected an atom count, got {lines[i].strip()[:60]!r}", str(path),
                              f"frame {len(frames)}, line {i + 1}") from None
        have = 0
        for k in range(i + 2, min(i + 2 + n_atoms, n_lines)):
            if not lines[k].strip():
                break
            have += 1
        if i + 1 >= n_lines or have < n_atoms:
            raise EqtoolError(f"truncated frame: atom-count line says {n_atoms} atoms but only "
                              f"{have} atom lines follow", str(path),
                              f"frame {len(frames)}, line {i + 1}")
        frames.append((i, n_atoms))
        i += 2 + n_atoms
    return frames


def _find_symbol_line(lines: list[str], start: int, n_atoms: int, symbol: str) -> int | None:
    for k in range(start + 2, start + 2 + n_atoms):
        parts = lines[k].split()
        if parts and parts[0] == symbol:
            return k
    return None


def _read_xyz(path: Path, select) -> list[AtomGraph]:
    import ase.io

    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as exc:
        raise EqtoolError(f"not a text xyz file ({exc.reason})", str(path)) from None
    frames = _scan_xyz(path, lines)
    if not frames:
        raise EqtoolError("no structures found", str(path))
    graphs = []
    for f in select(len(frames)):
        start, n_atoms = frames[f]
        text = "".join(lines[start:start + 2 + n_atoms])
        try:
            atoms = ase.io.read(io.StringIO(text), format="extxyz")
        except Exception as exc:  # ASE raises many types; wrap all, keep the message
            where = f"frame {f}"
            if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
                line = _find_symbol_line(lines, start, n_atoms, exc.args[0])
                if line is not None:
                    where += f", line {line + 1}"
            raise EqtoolError(_ase_message(exc), str(path), where) from None
        graphs.append(graph_from_atoms(atoms, f"{path}@{f}"))
    return graphs


def read_ase(path: str | Path, select, ase_format: str) -> list[AtomGraph]:
    """Read frames of ``path`` with ASE.

    Args:
        path: an existing file.
        select: ``select(n_frames) -> list[int]`` picks absolute frame numbers.
        ase_format: an ASE format name (``"extxyz"`` uses eqtool's scanner first).

    Returns:
        graphs with ``source = "<path>@<frame>"``.
    """
    import ase.io

    path = Path(path)
    if _is_blank(path):
        raise EqtoolError("file is empty", str(path))
    if ase_format in ("extxyz", "xyz"):
        return _read_xyz(path, select)
    try:
        images = ase.io.read(str(path), index=":", format=ase_format)
    except Exception as exc:  # wrap any ASE/parser failure
        raise EqtoolError(f"cannot read as {ase_format}: {_ase_message(exc)}", str(path)) from None
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise EqtoolError(f"no structures found (read as {ase_format})", str(path))
    return [graph_from_atoms(images[f], f"{path}@{f}") for f in select(len(images))]


# ----------------------------------------------------------------------------------- writing
def _fmt_float(x) -> str:
    return repr(float(x))  # shortest string that round-trips float64 exactly


def _encode_value(value) -> str | None:
    """extxyz comment-line text for one info value, or None if it cannot be represented."""
    if isinstance(value, (bool, np.bool_)):
        return "T" if value else "F"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _fmt_float(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "biuf":
        if value.dtype.kind == "b":
            return '"' + " ".join("T" if v else "F" for v in value) + '"'
        if value.dtype.kind in "iu":
            return '"' + " ".join(str(int(v)) for v in value) + '"'
        return '"' + " ".join(_fmt_float(v) for v in value) + '"'
    return None


def _encode_json(value) -> str | None:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    try:
        text = "_JSON " + json.dumps(value)
    except (TypeError, ValueError):
        return None
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _same(a, b) -> bool:
    """True if ``a`` (read back) equals ``b`` (written) in value and in kind (str/bool/number)."""
    if isinstance(a, np.generic):
        a = a.item()
    if isinstance(a, (str, bool)) or isinstance(b, (str, bool)):
        return type(a) is type(b) and a == b
    try:
        return np.asarray(a).dtype.kind == np.asarray(b).dtype.kind and np.array_equal(a, b)
    except (TypeError, ValueError):
        return False


def _info_item(key: str, value) -> str | None:
    """``key=value`` that ASE's extxyz parser reads back as ``value``; None if impossible."""
    from ase.io.extxyz import escape, key_val_str_to_dict

    if isinstance(value, np.generic):
        value = value.item()
    for text in (_encode_value(value), _encode_json(value)):
        if text is None:
            continue
        item = f"{escape(key)}={text}"
        try:
            back = key_val_str_to_dict(item)
        except Exception:  # the parser rejected it: try the next encoding
            continue
        if key in back and _same(back[key], value):
            return item
    return None


def _extxyz_frame(graph: AtomGraph) -> str:
    n = graph.n_atoms
    from ase.data import chemical_symbols

    columns = [np.array([chemical_symbols[z] for z in graph.atomic_numbers], dtype=object)[:, None],
               graph.positions]
    props = ["species:S:1", "pos:R:3"]
    for key, name in _NODE_COLUMNS.items():
        if key in graph.labels:
            value = np.asarray(graph.labels[key], dtype=np.float64).reshape(n, -1)
            columns.append(value)
            props.append(f"{name}:R:{value.shape[1]}")
    head = []
    if graph.cell.any():
        # extxyz Lattice = the three cell vectors (rows of the ASE cell), one after another
        head.append('Lattice="' + " ".join(_fmt_float(x) for x in graph.cell.reshape(-1)) + '"')
    head.append("Properties=" + ":".join(props))
    if K.ENERGY in graph.labels:
        head.append(f"energy={_fmt_float(graph.labels[K.ENERGY])}")
    if K.STRESS in graph.labels:
        stress = np.asarray(graph.labels[K.STRESS], dtype=np.float64).reshape(3, 3)
        head.append('stress="' + " ".join(_fmt_float(x) for x in stress.T.reshape(-1)) + '"')
    for key, value in graph.info.items():
        if str(key).lower() in _RESERVED_INFO:
            continue
        item = _info_item(str(key), value)
        if item is not None:
            head.append(item)
    head.append('pbc="' + " ".join("T" if p else "F" for p in graph.pbc) + '"')
    body = np.concatenate([c.astype(object) for c in columns], axis=1)
    rows = [" ".join(str(v) if isinstance(v, str) else _fmt_float(v) for v in row) for row in body]
    return f"{n}\n{' '.join(head)}\n" + "\n".join(rows) + "\n"


def write_extxyz(path: str | Path, graphs: Sequence[AtomGraph]) -> None:
    """Write graphs as extended XYZ, exact in float64.

    Labels written: energy (``energy=`` on the comment line), stress (``stress=``, 3x3), and the
    per-atom columns forces, energies, charges, magmoms; ASE reads them back as calculator
    results. ``info`` entries go on the comment line when ASE can read them back unchanged
    (numbers, strings, bools, 1-D arrays, else JSON); entries that are not JSON-serialisable
    are left out. Other labels (e.g. Hamiltonian blocks) are not written: use HDF5 for those.
    """
    with atomic_write(path, "w", newline="\n") as fh:
        for graph in graphs:
            fh.write(_extxyz_frame(graph))


def write_ase(path: str | Path, graphs: Sequence[AtomGraph], ase_format: str) -> None:
    """Write graphs with ``ase.io.write`` (CIF, POSCAR, traj, ...), atomically."""
    import ase.io

    atoms = [g.to_ase() for g in graphs]
    for a in atoms:  # ASE writers choke on arbitrary metadata; the structure is what counts
        a.info = {k: v for k, v in a.info.items() if isinstance(v, (str, numbers.Number))}
    with atomic_path(path) as tmp:
        try:
            ase.io.write(str(tmp), atoms if len(atoms) != 1 else atoms[0], format=ase_format)
        except EqtoolError:
            raise
        except Exception as exc:  # wrap writer failures, keep the message
            raise EqtoolError(f"cannot write as {ase_format}: {_ase_message(exc)}",
                              str(path)) from None
