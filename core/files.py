"""Whole files or none: every file ptrag writes goes through :func:`atomic_write`.

A file is written under a hidden temporary name beside its target and renamed over it, so a reader
(or a run resumed after a crash) sees the old file or the new one, never half of one; a write that
fails (a full disk, a file-size limit) removes the temporary file and raises the OSError naming the
target. JSON is written valid (``null`` where a value is NaN or infinite), indented for people.
An ``.h5ad`` is checked for room first (:func:`write_h5ad`): HDF5 cannot recover from a write that
fails midway, and h5py then crashes the process when it closes the file (a segmentation fault).
Every write is announced first (:func:`announce`), so a run folder can list what ptrag wrote into it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PtragError
from .markup import load_json


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays as Python ones, NaN and infinities as null."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def dumps_json(value: Any) -> str:
    """Valid JSON (``null``, never a bare ``NaN``), indented for people."""
    return json.dumps(json_safe(value), indent=2, allow_nan=False)


def temporary_name(path: Path) -> Path:
    """Where :func:`atomic_write` writes ``path`` first (recognised by run folders as debris)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


#: called with each path before ptrag writes it (runs/marker.py: a run folder lists what ptrag wrote)
_BEFORE_WRITE: list[Callable[[Path], None]] = []


def before_write(hook: Callable[[Path], None]) -> None:
    """Call ``hook(path)`` before every file ptrag writes (once per hook); it may refuse by raising."""
    if hook not in _BEFORE_WRITE:
        _BEFORE_WRITE.append(hook)


def announce(path: str | Path) -> None:
    """Say that ``path`` is about to be written (by :func:`atomic_write`, or by a caller that
    appends to a file or lets a component write a folder)."""
    for hook in _BEFORE_WRITE:
        hook(Path(path))


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to a hidden sibling, then rename it over ``path``."""
    path = Path(path)
    announce(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp.exists():
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):
            exc.filename = str(path)  # h5py and others say "disk full" without the file: name the one asked for
        raise
    return path


def _nbytes(value: Any) -> int:
    """Bytes the arrays in ``value`` take (an AnnData, a DataFrame, a sparse matrix, a mapping of them)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes) + (sum(len(str(v)) for v in value.flat) if value.dtype == object else 0)
    if all(hasattr(value, a) for a in ("data", "indices", "indptr")):  # scipy sparse
        return sum(_nbytes(getattr(value, a)) for a in ("data", "indices", "indptr"))
    if hasattr(value, "memory_usage") and hasattr(value, "index"):  # pandas
        usage = value.memory_usage(index=True, deep=True)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    if all(hasattr(value, a) for a in ("obsm", "uns", "obs", "var")):  # AnnData
        parts = ("X", "layers", "obs", "var", "obsm", "varm", "obsp", "varp", "uns", "raw")
        return sum(_nbytes(getattr(value, a, None)) for a in parts)
    if isinstance(value, Mapping) or hasattr(value, "keys") and hasattr(value, "__getitem__"):
        return sum(_nbytes(value[k]) for k in value.keys())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, (str, bytes)):
        return len(value)
    return 8 if value is not None else 0


def require_room(path: str | Path, nbytes: int) -> None:
    """Raise the OSError a write of ``nbytes`` to ``path`` would end in (ENOSPC: not that much free
    on its disk; EFBIG: more than this process's file-size limit, ``ulimit -f``), before writing."""
    path = Path(path)
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and nbytes > limit:
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))
    except ImportError:  # not on POSIX
        pass
    if nbytes > shutil.disk_usage(path.parent).free:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def h5ad_bytes(adata: Any) -> int:
    """A generous estimate of the size of ``adata`` written as .h5ad (uncompressed arrays + HDF5's own)."""
    return int(_nbytes(adata) * 1.1) + (64 << 10)


def with_room(write: Callable[[Path], Any], nbytes: int) -> Callable[[Path], Any]:
    """``write`` for :func:`atomic_write`, preceded by :func:`require_room` for ``nbytes`` (once the
    temporary file is created, so a folder that cannot hold it fails with the OS's own reason)."""
    def checked(tmp: Path) -> Any:
        tmp.touch()
        require_room(tmp, nbytes)
        return write(tmp)

    return checked


def write_h5ad(path: str | Path, adata: Any, compression: str | None = None) -> Path:
    """``adata`` as .h5ad, whole or not at all, room checked first (see the module docstring)."""
    return atomic_write(path, with_room(lambda tmp: adata.write_h5ad(tmp, compression=compression),
                                        h5ad_bytes(adata)))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, value: Any) -> Path:
    return write_text(path, dumps_json(value) + "\n")


def write_csv(path: str | Path, frame: Any) -> Path:
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _link_name(path: Path) -> Path:
    """Where a hard link is made before it is renamed over ``path``: the partial name a run folder
    knows as ptrag's debris."""
    return temporary_name(path)


def link_if_identical(path: str | Path, twins: Sequence[Path]) -> Path | None:
    """Replace ``path`` by a hard link to the first of ``twins`` with the same bytes (sha256), so one
    copy is stored; returns that twin, or None (no twin, or hard links impossible here: the file
    stays a copy). The link replaces the name by a rename, never writing into either file; readers
    of either path see whole files throughout."""
    path = Path(path)
    size, mine = path.stat().st_size, None
    for twin in twins:
        try:
            if not twin.is_file() or twin.stat().st_size != size:
                continue
            if os.path.samefile(twin, path):
                return twin  # one copy already
            mine = mine or content_hash(path)
            if content_hash(twin) != mine:
                continue
            tmp = _link_name(path)
            if tmp.exists():
                tmp.unlink()
            os.link(twin, tmp)
            os.replace(tmp, path)
            return twin
        except OSError:  # another filesystem, no hard links, no permission: keep the copy
            with contextlib.suppress(OSError):
                _link_name(path).unlink()
            return None
    return None


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or unreadable (nested beyond
    :data:`ptrag.core.markup.MAX_DEPTH` included)."""
    try:
        value = load_json(Path(path).read_text(), str(path))
    except (OSError, ValueError, PtragError):
        return None
    return value if isinstance(value, dict) else None  # a list or a number where ptrag writes an object
