"""Whole files or none: every file ptrag writes goes through :func:`atomic_write`.

A file is written under a hidden temporary name beside its target and renamed over it, so a reader
(or a run resumed after a crash) sees the old file or the new one, never half of one. JSON is
written valid (``null`` where a value is NaN or infinite), indented for people.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


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


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to a hidden sibling, then rename it over ``path``."""
    path = Path(path)
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
    """Where a hard link is made before it is renamed over ``path`` (debris to run folders, as a partial file)."""
    return path.with_name(f".{path.stem}.partial-link{path.suffix}")


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
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
