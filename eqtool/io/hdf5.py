"""eqtool HDF5 datasets: many variable-size systems in one chunked, compressed file.

The layout is documented field by field in ``docs/hdf5-format.md``. In short, systems are
concatenated (never padded) and located through offset arrays::

    /systems/n_atoms      [B]       i8        atoms per system
    /systems/atom_offset  [B+1]     i8        first atom row of each system (+ total)
    /systems/pair_offset  [B+1]     i8        first pair row of each system (sum of n_i**2)
    /systems/cell         [B,3,3]   f8  Å     row vectors
    /systems/pbc          [B,3]     bool
    /atoms/positions      [N,3]     f8  Å
    /atoms/atomic_numbers [N]       i1
    /atoms/<key>   /systems/<key>   /pairs/<key>     labels by level (node / system / pair)
    /systems/has_<key>    [B] bool  only for labels present on some systems (missing = NaN / 0)
    /systems/info_<key>   [B] str   per-system strings kept on request (missing = "")

Writing streams through :class:`H5Writer` (bounded memory, temp file + ``os.replace``); reading
goes through :class:`H5Dataset`, which keeps only the offsets and coverage masks in memory and
reads one system by slicing. Units: Å, eV, eV/Å, eV/Å³ (ASE sign), Hartree for pair fields.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from eqtool.data import keys as K
from eqtool.data.graph import AtomGraph
from eqtool.errors import EqtoolError
from eqtool.io.atomic import atomic_path

__all__ = [
    "FORMAT", "FORMAT_VERSION", "UNITS", "H5Writer", "H5Dataset", "read_h5", "write_h5",
    "content_hash",
]

FORMAT = "eqtool-dataset"
FORMAT_VERSION = 1
UNITS = {
    "length": "Å", "energy": "eV", "forces": "eV/Å", "stress": "eV/Å^3", "pair": "Hartree",
}
_GROUP = {"node": "atoms", "system": "systems", "pair": "pairs"}
_LEVEL = {v: k for k, v in _GROUP.items()}
# dataset names that labels may not use (structure and bookkeeping)
_RESERVED = {
    "atoms": {K.POSITIONS, K.ATOMIC_NUMBERS},
    "systems": {K.N_ATOMS, "atom_offset", "pair_offset", K.CELL, K.PBC},
    "pairs": set(),
}
_CHUNK_BYTES = 1 << 16  # target uncompressed chunk size
_FLUSH_BYTES = 8 << 20  # buffered bytes before a flush
_FLUSH_SYSTEMS = 4096
_STR = h5py.string_dtype("utf-8")


# ----------------------------------------------------------------------------- hashing
def _hash_strings(h, values: Iterable[str]) -> None:
    for s in values:
        b = s.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)


def _dtype_tag(dtype) -> str:
    """``"utf-8"`` for variable-length strings, else the numpy dtype string (``<f8``, ``|i1``...)."""
    return "utf-8" if h5py.check_string_dtype(dtype) is not None else np.dtype(dtype).str


def _combine(parts: Iterable[tuple[str, str, tuple[int, ...], bytes]]) -> str:
    """Top-level content hash from ``(path, dtype tag, shape, sha256 of the data)``, sorted by path."""
    top = hashlib.sha256()
    for path, tag, shape, digest in sorted(parts):
        top.update(f"{path}\0{tag}\0{json.dumps(list(shape))}\0".encode())
        top.update(digest)
    return top.hexdigest()


def _data_paths(f: h5py.File) -> list[str]:
    return [f"{g}/{name}" for g in ("atoms", "systems", "pairs") if g in f for name in f[g]]


def _file_hash(f: h5py.File, block_bytes: int = 16 << 20) -> str:
    """Recompute the content hash of an open dataset file by reading every data array in blocks."""
    parts = []
    for path in _data_paths(f):
        d = f[path]
        h = hashlib.sha256()
        tag = _dtype_tag(d.dtype)
        row = max(1, int(np.prod(d.shape[1:], dtype=np.int64)) * d.dtype.itemsize)
        step = max(1, block_bytes // row)
        for a in range(0, d.shape[0], step):
            if tag == "utf-8":
                _hash_strings(h, d.asstr()[a: a + step])
            else:
                h.update(np.ascontiguousarray(d[a: a + step]).tobytes())
        parts.append((path, tag, tuple(d.shape), h.digest()))
    return _combine(parts)


def content_hash(path: str | os.PathLike) -> str:
    """Recompute the ``content_hash`` of an eqtool HDF5 dataset from its data (reads the whole file)."""
    with _open_checked(path) as f:
        return _file_hash(f)


# ----------------------------------------------------------------------------- writing
def _norm_dtype(value: np.ndarray, key: str, source) -> np.dtype:
    kind = value.dtype.kind
    if kind == "f":
        return np.dtype("<f8")
    if kind in "iu":
        return np.dtype("<i8")
    if kind == "b":
        return np.dtype("|b1")
    if kind == "c":
        return np.dtype("<c16")
    raise EqtoolError(f"label {key!r} has dtype {value.dtype}; only numeric and bool labels can be "
                      "stored in an HDF5 dataset", source)


def _fill(dtype: np.dtype):
    return np.nan if dtype.kind in "fc" else (False if dtype.kind == "b" else 0)


class _Column:
    """One growing dataset plus the running sha256 of everything appended to it."""

    def __init__(self, group: h5py.Group, name: str, dtype, trail: tuple[int, ...], rows_before: int,
                 compression: dict, unit: str = ""):
        dtype = np.dtype(dtype)
        self.is_str = h5py.check_string_dtype(dtype) is not None
        self.dtype = dtype
        self.trail = tuple(trail)
        row_bytes = max(1, int(np.prod(trail, dtype=np.int64))) * (8 if self.is_str else self.dtype.itemsize)
        chunk_rows = int(min(16384, max(16, _CHUNK_BYTES // row_bytes)))
        fill = "" if self.is_str else _fill(self.dtype)
        kw = {} if self.is_str else {"fillvalue": fill}
        self.dset = group.create_dataset(
            name, shape=(rows_before, *trail), maxshape=(None, *trail), dtype=dtype,
            chunks=(chunk_rows, *trail), **compression, **kw)
        if unit:
            self.dset.attrs["unit"] = unit
        self.hash = hashlib.sha256()
        self.rows = rows_before
        self._hash_fill(rows_before)

    def fill_block(self, rows: int):
        if self.is_str:
            return np.array([""] * rows, dtype=object)
        return np.full((rows, *self.trail), _fill(self.dtype), dtype=self.dtype)

    def _hash_fill(self, rows: int) -> None:
        """Hash ``rows`` rows of fill value (left implicit in the file) without a big allocation."""
        step = 1 << 16
        for a in range(0, rows, step):
            n = min(step, rows - a)
            if self.is_str:
                self.hash.update(bytes(8 * n))
            else:
                self.hash.update(self.fill_block(n).tobytes())

    def write(self, block) -> None:
        n = len(block)
        if n == 0:
            return
        if self.is_str:
            block = np.asarray(block, dtype=object)
            _hash_strings(self.hash, block)
        else:
            block = np.ascontiguousarray(block, dtype=self.dtype)
            self.hash.update(block.tobytes())
        self.dset.resize(self.rows + n, axis=0)
        self.dset[self.rows: self.rows + n] = block
        self.rows += n

    def part(self, path: str):
        return path, _dtype_tag(self.dtype), (self.rows, *self.trail), self.hash.digest()


class H5Writer:
    """Stream :class:`AtomGraph` systems into an eqtool HDF5 dataset.

    Memory stays bounded (a few MB of buffered rows). Everything goes to a temporary file in the
    same folder (:func:`eqtool.io.atomic.atomic_path`), which replaces ``path`` atomically on a
    successful :meth:`close`; on an
    exception inside ``with`` (or :meth:`abort`) the temp file is removed and an existing ``path``
    is untouched. Use it as a context manager.

    Args:
        path: output ``.h5`` file.
        source: free text stored as the ``source`` attribute (where the data came from).
        level_of_theory: free text (e.g. ``"PBE/PAW 520 eV"``, ``"EMT"``).
        info_keys: keys of ``graph.info`` to keep as per-system strings (``/systems/info_<key>``).
        levels: level (``"node"``, ``"system"``, ``"pair"``) of labels not registered in
            :data:`eqtool.data.keys.FIELDS`; unregistered keys default to ``"system"`` (as in
            :func:`eqtool.data.batch.collate`).
        compression: ``"gzip"`` (level 4, readable everywhere) or ``"lzf"`` (faster, h5py only).
    """

    def __init__(self, path: str | os.PathLike, source: str = "", level_of_theory: str = "",
                 info_keys: Sequence[str] = (), levels: Mapping[str, str] | None = None,
                 compression: str = "gzip"):
        self.path = Path(path)
        self.info_keys = tuple(info_keys)
        self.levels = dict(levels or {})
        for key, level in self.levels.items():
            if level not in _GROUP:
                raise EqtoolError(f"level {level!r} of label {key!r} must be one of node, system, pair",
                                  str(self.path))
        for key in self.info_keys:
            if not key or "/" in key:
                raise EqtoolError(f"info key {key!r} is not a valid dataset name", str(self.path))
        if compression == "gzip":
            self._comp = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        elif compression == "lzf":
            self._comp = {"compression": "lzf", "shuffle": True}
        else:
            raise EqtoolError(f"unknown compression {compression!r} (gzip or lzf)", str(self.path))
        if self.path.is_dir():
            raise EqtoolError("is a directory, expected an .h5 file path", str(self.path))
        # temp file next to path, renamed onto it when the stack closes cleanly (eqtool.io.atomic)
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        self._cols: dict[str, _Column] = {}
        self._spec: dict[str, tuple[str, np.dtype, tuple[int, ...]]] = {}  # key -> level, dtype, trail
        self._has: dict[str, bytearray] = {}
        self._buf: list[dict] = []
        self._buf_bytes = self._buf_sys = 0
        self._n_sys = self._n_atoms = self._n_pairs = 0
        self._done = False
        self._hash: str | None = None
        try:
            self._f = h5py.File(self._tmp, "w", track_order=False)
            a = self._f.attrs
            a["format"] = FORMAT
            a["format_version"] = FORMAT_VERSION
            from eqtool import __version__

            a["eqtool_version"] = __version__
            a["units"] = json.dumps(UNITS, ensure_ascii=False)
            a["source"] = str(source)
            a["level_of_theory"] = str(level_of_theory)
            for g in _GROUP.values():
                self._f.create_group(g)
            self._new_col("systems/n_atoms", "<i8", ())
            self._new_col("systems/atom_offset", "<i8", ()).write(np.zeros(1, np.int64))
            self._new_col("systems/pair_offset", "<i8", ()).write(np.zeros(1, np.int64))
            self._new_col("systems/cell", "<f8", (3, 3), unit="Å")
            self._new_col("systems/pbc", "|b1", (3,))
            self._new_col("atoms/positions", "<f8", (3,), unit="Å")
            self._new_col("atoms/atomic_numbers", "|i1", ())
            for key in self.info_keys:
                self._new_col(f"systems/info_{key}", _STR, ())
        except BaseException:
            self.abort()
            raise

    # -- context manager
    def __enter__(self) -> H5Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- helpers
    def _new_col(self, path: str, dtype, trail, rows_before: int = 0, unit: str = "") -> _Column:
        group, name = path.split("/")
        col = _Column(self._f[group], name, dtype, tuple(trail), rows_before, self._comp, unit)
        self._cols[path] = col
        return col

    def _level(self, key: str) -> str:
        if key in self.levels:
            return self.levels[key]
        return K.FIELDS[key].level if key in K.FIELDS else "system"

    def _check_label(self, key: str, value: np.ndarray, n_atoms: np.ndarray, where) -> np.ndarray:
        """Validate one label block (rows for ``len(n_atoms)`` systems) and register its spec."""
        level = self._level(key)
        if level == "edge":
            raise EqtoolError(f"label {key!r} is edge-level; edges are not stored in HDF5 datasets "
                              "(they are recomputed from positions)", *where)
        if level not in _GROUP:
            raise EqtoolError(f"label {key!r} has unknown level {level!r}", *where)
        group = _GROUP[level]
        if key in _RESERVED[group] or key.startswith(("has_", "info_")) or "/" in key or not key:
            raise EqtoolError(f"label name {key!r} is reserved or invalid in HDF5 datasets", *where)
        dtype = _norm_dtype(value, key, where[0])
        if level == "system":
            rows = len(n_atoms)
        else:
            rows = int(n_atoms.sum()) if level == "node" else int((n_atoms**2).sum())
        if value.ndim == 0 or value.shape[0] != rows:
            want = {"node": "n_atoms", "pair": "n_atoms**2", "system": "n_systems"}[level]
            raise EqtoolError(f"{level}-level label {key!r} has shape {value.shape}, expected {rows} "
                              f"({want}) leading rows", *where)
        trail = tuple(value.shape[1:])
        spec = self._spec.setdefault(key, (level, dtype, trail))
        if spec != (level, dtype, trail):
            raise EqtoolError(f"label {key!r} has trailing shape {trail} and dtype {dtype}, but earlier "
                              f"systems had {spec[2]} and {spec[1]}", *where)
        return value

    # -- public API
    def append(self, graph: AtomGraph) -> None:
        """Add one system (its labels, and the ``info_keys`` of its info, as strings)."""
        if not isinstance(graph, AtomGraph):
            raise TypeError(f"H5Writer.append expects an AtomGraph, got {type(graph).__name__}")
        src = graph.source or str(self.path)
        where = (src.rsplit("@", 1)[0], f"frame {src.rsplit('@', 1)[1]}") if "@" in src else (src, None)
        if graph.source is None:
            where = (str(self.path), f"system {self.n_systems}")
        n = np.array([graph.n_atoms], dtype=np.int64)
        labels = {}
        for key, value in graph.labels.items():
            value = np.asarray(value)
            if self._level(key) == "system":
                value = value[None]
            labels[key] = self._check_label(key, value, n, where)
        info = {k: [_info_str(graph.info.get(k))] for k in self.info_keys}
        self._push(n, graph.positions, graph.atomic_numbers, graph.cell[None], graph.pbc[None],
                   labels, info, where)

    def extend(self, graphs: Iterable[AtomGraph]) -> None:
        for g in graphs:
            self.append(g)

    def append_arrays(self, n_atoms, positions, atomic_numbers, cell=None, pbc=None,
                      labels: Mapping[str, Any] | None = None,
                      info: Mapping[str, Sequence[str]] | None = None) -> None:
        """Fast path: add ``b`` systems given as concatenated arrays (no AtomGraph validation).

        Args:
            n_atoms: ``[b]`` atoms per system.
            positions: ``[sum n, 3]`` Å; atomic_numbers ``[sum n]``.
            cell: ``[b, 3, 3]`` Å (default zeros); pbc ``[b, 3]`` (default False).
            labels: key -> rows by level: ``[b, ...]`` system, ``[sum n, ...]`` node,
                ``[sum n**2, ...]`` pair. Every label given here covers all ``b`` systems.
            info: key (one of ``info_keys``) -> ``b`` strings.
        """
        n = np.asarray(n_atoms, dtype=np.int64).reshape(-1)
        b = len(n)
        where = (str(self.path), f"systems {self._n_sys}..{self._n_sys + b - 1} (append_arrays)")
        if (n < 1).any():
            raise EqtoolError("every system needs at least one atom", *where)
        cell = np.zeros((b, 3, 3)) if cell is None else np.asarray(cell, dtype=np.float64).reshape(b, 3, 3)
        pbc = np.zeros((b, 3), bool) if pbc is None else np.broadcast_to(np.asarray(pbc, bool), (b, 3))
        checked = {k: self._check_label(k, np.asarray(v), n, where) for k, v in (labels or {}).items()}
        strs = {}
        for k in self.info_keys:
            vals = (info or {}).get(k)
            strs[k] = [""] * b if vals is None else [_info_str(v) for v in vals]
            if len(strs[k]) != b:
                raise EqtoolError(f"info {k!r} has {len(strs[k])} strings for {b} systems", *where)
        self._push(n, positions, atomic_numbers, cell, pbc, checked, strs, where)

    def _push(self, n, positions, numbers, cell, pbc, labels, info, where) -> None:
        if self._done:
            raise RuntimeError("H5Writer is closed")
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        z = np.asarray(numbers).reshape(-1)
        if len(pos) != n.sum() or len(z) != n.sum():
            raise EqtoolError(f"{len(pos)} positions and {len(z)} atomic numbers for {int(n.sum())} atoms",
                              *where)
        if len(z) and (z.min() < 1 or z.max() > 118):
            raise EqtoolError("atomic numbers must be in 1..118", *where)
        if not np.isfinite(pos).all():
            raise EqtoolError("non-finite (NaN/inf) positions", *where)
        block = {"n": len(n), "n_atoms": n, "positions": pos, "atomic_numbers": z.astype(np.int8),
                 "cell": cell, "pbc": pbc, "labels": labels, "info": info}
        self._buf.append(block)
        self._buf_sys += len(n)
        self._buf_bytes += pos.nbytes + sum(v.nbytes for v in labels.values()) + 100 * len(n)
        if self._buf_bytes >= _FLUSH_BYTES or self._buf_sys >= _FLUSH_SYSTEMS:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        blocks, self._buf, self._buf_bytes, self._buf_sys = self._buf, [], 0, 0
        n = np.concatenate([b["n_atoms"] for b in blocks])
        c = self._cols
        c["systems/n_atoms"].write(n)
        c["systems/atom_offset"].write(self._n_atoms + np.cumsum(n))
        c["systems/pair_offset"].write(self._n_pairs + np.cumsum(n**2))
        c["systems/cell"].write(np.concatenate([b["cell"] for b in blocks]))
        c["systems/pbc"].write(np.concatenate([b["pbc"] for b in blocks]))
        c["atoms/positions"].write(np.concatenate([b["positions"] for b in blocks]))
        c["atoms/atomic_numbers"].write(np.concatenate([b["atomic_numbers"] for b in blocks]))
        for key in self.info_keys:
            c[f"systems/info_{key}"].write([s for b in blocks for s in b["info"][key]])
        before = {"system": self._n_sys, "node": self._n_atoms, "pair": self._n_pairs}
        for key, (level, dtype, trail) in self._spec.items():
            path = f"{_GROUP[level]}/{key}"
            if path not in c:
                unit = K.FIELDS[key].unit if key in K.FIELDS else ""
                self._new_col(path, dtype, trail, before[level], unit)
                self._has[key] = bytearray(self._n_sys)  # all earlier systems lack it
            parts = []
            for b in blocks:
                if key in b["labels"]:
                    parts.append(b["labels"][key])
                else:
                    bn = b["n_atoms"]
                    rows = {"system": len(bn), "node": int(bn.sum()), "pair": int((bn**2).sum())}[level]
                    parts.append(c[path].fill_block(rows))
                self._has[key].extend((b"\x01" if key in b["labels"] else b"\x00") * b["n"])
            c[path].write(np.concatenate(parts))
        self._n_sys += len(n)
        self._n_atoms += int(n.sum())
        self._n_pairs += int((n**2).sum())

    def close(self) -> str:
        """Flush, write the summary attributes, and move the file into place; returns the content hash."""
        if self._done:
            if self._hash is None:
                raise RuntimeError("H5Writer was aborted; nothing was written")
            return self._hash
        try:
            self._flush()
            for key, mask in self._has.items():
                m = np.frombuffer(bytes(mask), dtype=np.uint8).astype(bool)
                if not m.all():
                    self._new_col(f"systems/has_{key}", "|b1", ()).write(m)
            self._hash = _combine(col.part(p) for p, col in self._cols.items())
            a = self._f.attrs
            a["content_hash"] = self._hash
            a["n_systems"] = self._n_sys
            a["n_atoms"] = self._n_atoms
            self._f.close()
            self._stack.close()  # os.replace(temp, path)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self._hash

    def abort(self) -> None:
        """Discard everything written; remove the temp file. ``path`` is left as it was."""
        self._done = True
        f = getattr(self, "_f", None)
        if f is not None:
            with contextlib.suppress(Exception):  # the file is discarded; a close error is moot
                f.close()
        stack = getattr(self, "_stack", None)
        if stack is not None:  # unwinding with an error removes the temp file
            err = RuntimeError("H5Writer aborted")
            stack.__exit__(type(err), err, None)

    @property
    def n_systems(self) -> int:
        """Systems appended so far."""
        return self._n_sys + self._buf_sys


def _info_str(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def write_h5(path: str | os.PathLike, graphs: Iterable[AtomGraph], **attrs) -> str:
    """Write ``graphs`` to ``path`` atomically; ``attrs`` go to :class:`H5Writer`.

    Returns the content hash.
    """
    with H5Writer(path, **attrs) as w:
        w.extend(graphs)
    return w.close()


# ----------------------------------------------------------------------------- reading
def _open_checked(path: str | os.PathLike) -> h5py.File:
    """Open ``path`` read-only and check it is an eqtool dataset; EqtoolError naming the file if not."""
    p = str(path)
    if not os.path.exists(p):
        raise EqtoolError("file not found", p)
    if os.path.isdir(p):
        raise EqtoolError("is a directory, expected an eqtool .h5 dataset", p)
    try:
        f = h5py.File(p, "r", rdcc_nbytes=4 << 20)
    except OSError as e:
        size = os.path.getsize(p)
        why = "empty file" if size == 0 else " ".join(str(e).split())
        raise EqtoolError(f"cannot open as HDF5 ({why}); the file is not HDF5 or is truncated", p) from e
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        f.close()
        raise EqtoolError(f"not an eqtool dataset (HDF5 file without format={FORMAT!r} attribute)", p)
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        f.close()
        raise EqtoolError(f"format_version {version} is not supported (this eqtool reads "
                          f"{FORMAT_VERSION}); upgrade eqtool", p)
    return f


def _attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


class H5Dataset:
    """Lazy random access to an eqtool HDF5 dataset, one :class:`AtomGraph` per index.

    Only the offsets, ``n_atoms`` and coverage masks are held in memory; ``ds[i]`` reads the
    slices of system ``i``. The HDF5 file is opened lazily per process (reopened after a fork),
    so the object pickles and works in ``torch.utils.data.DataLoader`` workers.

    Graphs are returned without re-validation (they were valid when written); their ``source``
    is ``"<path>@<index in file>"``.

    Args:
        path: the ``.h5`` file.
        indices: optional subset (indices into the file, in the order to serve them).
    """

    def __init__(self, path: str | os.PathLike, indices: Sequence[int] | None = None):
        self.path = str(path)
        self._h5: h5py.File | None = None
        self._pid = None
        self._dsets: dict[str, Any] = {}
        f = self._file()
        try:
            self.attrs = {k: _attr(v) for k, v in f.attrs.items()}
            if isinstance(self.attrs.get("units"), str):
                self.attrs["units"] = json.loads(self.attrs["units"])
            s = f["systems"]
            self._n_file = s["n_atoms"][:].astype(np.int64)
            self._atom_off = s["atom_offset"][:].astype(np.int64)
            self._pair_off = s["pair_offset"][:].astype(np.int64)
            levels, has, info = {}, {}, []
            for group, level in _LEVEL.items():
                if group not in f:
                    continue
                for name in f[group]:
                    if name in _RESERVED[group]:
                        continue
                    if group == "systems" and name.startswith("has_"):
                        has[name[4:]] = f[group][name][:].astype(bool)
                    elif group == "systems" and name.startswith("info_"):
                        info.append(name[5:])
                    else:
                        levels[name] = level
        except (KeyError, OSError) as e:
            raise EqtoolError(f"corrupt eqtool dataset ({e})", self.path) from e
        B = len(self._n_file)
        if len(self._atom_off) != B + 1 or len(self._pair_off) != B + 1:
            raise EqtoolError("corrupt eqtool dataset (offset arrays do not match n_atoms)", self.path)
        self.label_levels: dict[str, str] = dict(sorted(levels.items()))
        self.label_keys: tuple[str, ...] = tuple(self.label_levels)
        self.info_keys: tuple[str, ...] = tuple(sorted(info))
        self._has = has
        if indices is None:
            self._idx = None
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            if len(idx) and (idx.min() < -B or idx.max() >= B):
                raise IndexError(f"{self.path}: subset index out of range for {B} systems")
            self._idx = np.where(idx < 0, idx + B, idx)
        self.n_atoms: np.ndarray = self._n_file if self._idx is None else self._n_file[self._idx]
        self._stats = None

    # -- process-local file handle
    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            # after a fork the parent's handle is dropped (not closed: it belongs to the parent)
            self._h5 = _open_checked(self.path)
            self._pid = os.getpid()
            self._dsets = {}
        return self._h5

    def _d(self, path: str):
        d = self._dsets.get(path)
        if d is None:
            d = self._file()[path]
            if h5py.check_string_dtype(d.dtype) is not None:
                d = d.asstr()
            self._dsets[path] = d
        return d

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_h5=None, _pid=None, _dsets={})
        return state

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._dsets = None, {}

    def __enter__(self) -> H5Dataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sequence protocol
    def __len__(self) -> int:
        return len(self.n_atoms)

    def file_index(self, i: int) -> int:
        """Index into the file of item ``i`` (IndexError when out of range)."""
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} systems in {self.path}")
        i = i + n if i < 0 else i
        return i if self._idx is None else int(self._idx[i])

    def __getitem__(self, i) -> AtomGraph:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"H5Dataset indices must be integers or slices, not {type(i).__name__}")
        j = self.file_index(i)
        a0, a1 = self._atom_off[j], self._atom_off[j + 1]
        p0, p1 = self._pair_off[j], self._pair_off[j + 1]
        d = self._d
        try:
            labels = {}
            for key, level in self.label_levels.items():
                mask = self._has.get(key)
                if mask is not None and not mask[j]:
                    continue
                ds = d(f"{_GROUP[level]}/{key}")
                if level == "node":
                    labels[key] = ds[a0:a1]
                elif level == "pair":
                    labels[key] = ds[p0:p1]
                else:
                    labels[key] = np.asarray(ds[j])
            info = {}
            for key in self.info_keys:
                s = d(f"systems/info_{key}")[j]
                if s:
                    info[key] = s
            g = object.__new__(AtomGraph)
            g.__dict__.update(
                positions=d("atoms/positions")[a0:a1],
                atomic_numbers=d("atoms/atomic_numbers")[a0:a1].astype(np.int64),
                cell=d("systems/cell")[j], pbc=d("systems/pbc")[j],
                labels=labels, info=info, edge_index=None, edge_shift=None,
                source=f"{self.path}@{j}",
            )
        except (OSError, KeyError) as e:
            raise EqtoolError(f"cannot read system ({' '.join(str(e).split())})", self.path,
                              f"system {j}") from e
        return g

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"H5Dataset({self.path!r}, systems={len(self)}, labels={list(self.label_keys)})"

    # -- summaries
    def verify(self) -> str:
        """Recompute the content hash from the data; EqtoolError if it differs from the stored one."""
        got = _file_hash(self._file())
        want = self.attrs.get("content_hash")
        if got != want:
            raise EqtoolError(f"content hash mismatch (stored {want}, data {got}): the file was modified "
                              "or is corrupt", self.path)
        return got

    @property
    def elements(self) -> tuple[int, ...]:
        """Sorted atomic numbers present in the (selected) systems."""
        self.stats()
        return self._elements

    def coverage(self, key: str) -> int:
        """Number of selected systems that carry label ``key``."""
        mask = self._has.get(key)
        if key not in self.label_levels:
            return 0
        if mask is None:
            return len(self)
        return int(mask.sum() if self._idx is None else mask[self._idx].sum())

    def stats(self, block_atoms: int = 1 << 20) -> dict[str, Any]:
        """Summary for ``eqtool data info`` (streams the file in blocks of about ``block_atoms`` atoms).

        Returns a dict: ``systems``, ``atoms``, ``periodic`` (systems with any pbc),
        ``atoms_per_system`` {min, max, mean}, ``elements`` {symbol: atom count},
        ``labels`` {key: {level, systems, fraction}},
        ``energy_per_atom`` {mean, std, min, max} eV/atom and ``force_norm`` {mean, max} eV/Å
        (over systems that carry them; absent when no system does), and the file's ``attrs``.
        """
        if self._stats is not None:
            return self._stats
        from ase.data import chemical_symbols

        B = len(self._n_file)
        sel = np.zeros(B, dtype=np.int64)
        if self._idx is None:
            sel[:] = 1
        else:
            np.add.at(sel, self._idx, 1)  # repeated indices count repeatedly
        d = self._d
        counts = np.zeros(119, dtype=np.int64)
        e_sum = e_sq = 0.0
        e_n = 0
        e_min, e_max = np.inf, -np.inf
        f_sum, f_n, f_max = 0.0, 0, 0.0
        periodic = 0
        has_e = K.ENERGY in self.label_levels and self.label_levels[K.ENERGY] == "system"
        has_f = K.FORCES in self.label_levels and self.label_levels[K.FORCES] == "node"
        s0 = 0
        while s0 < B:
            s1 = int(np.searchsorted(self._atom_off, self._atom_off[s0] + block_atoms, side="right"))
            s1 = min(B, max(s1 - 1, s0 + 1))
            w = sel[s0:s1]
            a0, a1 = self._atom_off[s0], self._atom_off[s1]
            n = self._n_file[s0:s1]
            aw = np.repeat(w, n)
            z = d("atoms/atomic_numbers")[a0:a1].astype(np.int64)
            counts += np.bincount(z, weights=aw, minlength=119).astype(np.int64)
            periodic += int((d("systems/pbc")[s0:s1].any(1) * w).sum())
            if has_e:
                m = w * (self._has[K.ENERGY][s0:s1] if K.ENERGY in self._has else 1)
                epa = d(f"systems/{K.ENERGY}")[s0:s1] / n
                ok = m > 0
                if ok.any():
                    e_sum += float((epa * m)[ok].sum())
                    e_sq += float((epa**2 * m)[ok].sum())
                    e_n += int(m[ok].sum())
                    e_min, e_max = min(e_min, float(epa[ok].min())), max(e_max, float(epa[ok].max()))
            if has_f:
                m = w * (self._has[K.FORCES][s0:s1] if K.FORCES in self._has else 1)
                am = np.repeat(m, n)
                ok = am > 0
                if ok.any():
                    fn = np.linalg.norm(d(f"atoms/{K.FORCES}")[a0:a1][ok].reshape(int(ok.sum()), -1), axis=1)
                    f_sum += float((fn * am[ok]).sum())
                    f_n += int(am[ok].sum())
                    f_max = max(f_max, float(fn.max()))
            s0 = s1
        nat = self.n_atoms
        out: dict[str, Any] = {
            "systems": len(self),
            "atoms": int(nat.sum()),
            "periodic": periodic,
            "atoms_per_system": ({"min": int(nat.min()), "max": int(nat.max()), "mean": float(nat.mean())}
                                 if len(nat) else {}),
            "elements": {chemical_symbols[z]: int(c) for z, c in enumerate(counts) if c},
            "labels": {k: {"level": lv, "systems": self.coverage(k),
                           "fraction": self.coverage(k) / max(1, len(self))}
                       for k, lv in self.label_levels.items()},
            "attrs": dict(self.attrs),
        }
        if e_n:
            mean = e_sum / e_n
            out["energy_per_atom"] = {"mean": mean, "std": float(np.sqrt(max(0.0, e_sq / e_n - mean**2))),
                                      "min": e_min, "max": e_max}
        if f_n:
            out["force_norm"] = {"mean": f_sum / f_n, "max": f_max}
        self._stats = out
        self._elements = tuple(int(z) for z in np.nonzero(counts)[0])
        return out


def read_h5(path: str | os.PathLike, indices: Sequence[int] | None = None) -> list[AtomGraph]:
    """Read all (or the ``indices``) systems of an eqtool HDF5 dataset into memory."""
    with H5Dataset(path, indices) as ds:
        return list(ds)
