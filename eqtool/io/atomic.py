"""Atomic file writes: write to a temporary file in the same folder, then ``os.replace``.

A reader never sees a half-written file, and an error while writing leaves no output behind
(an existing file at ``path`` is kept unchanged).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from eqtool.errors import EqtoolError

__all__ = ["atomic_path", "atomic_write"]


def _check_folder(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise EqtoolError(f"output folder {str(folder)!r} does not exist", source=str(path))
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    For writers that want a file *name* (h5py, ASE trajectories) rather than an open handle.
    The temporary file keeps ``path``'s suffix (or ``suffix``) so format sniffing still works.
    On any exception the temporary file is deleted and the exception re-raised.

    Raises:
        EqtoolError: if the output folder does not exist.
    """
    path = Path(path)
    folder = _check_folder(path)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success rename it onto ``path``.

    Usage::

        with atomic_write("out.xyz") as fh:
            fh.write(text)

    Args:
        path: final destination.
        mode: ``"w"`` (text) or ``"wb"`` (binary); must be a write mode.
        **open_kwargs: passed to :func:`open` (e.g. ``encoding``, ``newline``).

    Raises:
        EqtoolError: if the output folder does not exist.
    """
    if "w" not in mode or "+" in mode or "a" in mode or "r" in mode:
        raise ValueError(f"atomic_write needs a write mode ('w' or 'wb'), got {mode!r}")
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as fh:
        yield fh
