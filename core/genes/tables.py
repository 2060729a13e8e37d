"""Writing gene-embedding tables in the formats the data layer reads; the format follows the suffix.

``.npz``: ``names`` [V] unicode, ``embeddings`` [V,E] float32/float16, ``provenance`` (0-d JSON
string). ``.pkl``/``.pickle``: GenePT's own layout, a plain dict symbol -> list of floats, so GenePT
users' code reads it unchanged; its provenance goes to ``<out>.provenance.json`` beside it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from ..data.embeddings import unpickle_table
from ..errors import ConfigError, DataError
from ..files import atomic_write, write_text

SUFFIXES = (".npz", ".pkl", ".pickle")
DTYPES = ("float32", "float16")


def sidecar_of(path: Path) -> Path:
    return Path(str(path) + ".provenance.json")


def write_table(path: Path, names: list[str], embeddings: np.ndarray, provenance: dict,
                dtype: str = "float32") -> Path:
    """Write the table; ``dtype`` float16 halves the size (the npz stores it as float16)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"-o {path}: unknown format {suffix or '(no suffix)'}; use .npz, .pkl or .pickle")
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype}: choose float32 or float16")
    matrix = np.asarray(embeddings)
    if matrix.ndim != 2 or matrix.shape[0] != len(names):
        raise DataError(f"{path}: {len(names)} names but embeddings of shape {matrix.shape}")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: duplicate gene names would be lost in the table")
    matrix = matrix.astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(provenance, sort_keys=True, default=str)
    # whole files or none (temporary name, then rename): a killed build never leaves half a table
    if suffix == ".npz":
        atomic_write(path, lambda tmp: np.savez_compressed(tmp, names=np.asarray(names, dtype=str), embeddings=matrix,
                                                           provenance=np.asarray(text)))
    else:
        table = {name: [float(v) for v in row] for name, row in zip(names, matrix, strict=False)}
        atomic_write(path, lambda tmp: tmp.write_bytes(pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL)))
        write_text(sidecar_of(path), json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_table(path: Path) -> tuple[list[str], np.ndarray, dict]:
    """Names, matrix and provenance of a table this module wrote (the data layer has the general reader)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return [str(n) for n in z["names"]], z["embeddings"], json.loads(str(z["provenance"]))
    if path.suffix.lower() in (".pkl", ".pickle"):
        table = unpickle_table(path)  # as data: a crafted pickle runs no code
        if not isinstance(table, dict):
            raise DataError(f"{path}: holds a {type(table).__name__}, not the dict gene symbol -> list of floats "
                            "that `ptrag genes build` writes")
        side = sidecar_of(path)
        prov = json.loads(side.read_text()) if side.is_file() else {}
        names = list(table)
        return names, np.asarray([table[n] for n in names], dtype=np.float32), prov
    raise ConfigError(f"{path}: unknown format; use .npz, .pkl or .pickle")
