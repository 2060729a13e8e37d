"""Whole files or none: every file ptrag writes goes through :func:`atomic_write`.

A file is written under a hidden temporary name beside its target and renamed over it, so a reader
(or a run resumed after a crash) sees the old file or the new one, never half of one. JSON is
written valid (``null`` where a value is NaN or infinite), indented for people. Every write is
announced first (:func:`announce`), so a run folder can list what ptrag wrote into it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
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


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, value: Any) -> Path:
    return write_text(path, dumps_json(value) + "\n")


def write_csv(path: str | Path, frame: Any) -> Path:
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
