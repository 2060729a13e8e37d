"""Writing gene-embedding tables in the formats the data layer reads; the format follows the suffix.

``.npz``: ``names`` [V] unicode, ``embeddings`` [V,E] float32/float16, ``provenance`` (0-d JSON
string); compressed (``--compress``), ``codes``/``scale``/``basis``/``mean`` instead of
``embeddings`` (core/data/codec.py); with ``--aliases``, ``alias_names`` [A] and ``alias_targets``
[A] (unicode): other names of the table's genes, each naming exactly one of them.
``.pkl``/``.pickle``: GenePT's own layout, a plain dict symbol -> list of floats, so GenePT users'
code reads it unchanged; its provenance goes to ``<out>.provenance.json`` beside it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from ..data.codec import decode
from ..data.embeddings import unpickle_table
from ..errors import ConfigError, DataError
from ..files import atomic_write, write_text

SUFFIXES = (".npz", ".pkl", ".pickle")
DTYPES = ("float32", "float16")


def sidecar_of(path: Path) -> Path:
    return Path(str(path) + ".provenance.json")


def check_output(path: Path, dtype: str = "float32", npz_only: str | None = None) -> None:
    """Before any work: a known suffix and dtype; ``npz_only`` names an option only .npz can hold."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"-o {path}: unknown format {suffix or '(no suffix)'}; use .npz, .pkl or .pickle")
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype}: choose float32 or float16")
    if npz_only and suffix != ".npz":
        raise ConfigError(f"-o {path}: {npz_only} needs an .npz output (GenePT's pickle holds only vectors)")


def write_table(path: Path, names: list[str], embeddings: np.ndarray, provenance: dict,
                dtype: str = "float32", compressed: dict[str, np.ndarray] | None = None,
                aliases: dict[str, str] | None = None) -> Path:
    """Write the table; ``dtype`` float16 halves the size (the npz stores it as float16);
    ``compressed`` (core/data/codec.py arrays) replaces ``embeddings``; ``aliases`` maps other
    names to table names (both .npz only)."""
    path = Path(path)
    suffix = path.suffix.lower()
    check_output(path, dtype, "--compress or --aliases" if compressed is not None or aliases else None)
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
        arrays = dict(compressed) if compressed is not None else {"embeddings": matrix}
        if aliases:
            arrays["alias_names"] = np.asarray(list(aliases), dtype=str)
            arrays["alias_targets"] = np.asarray(list(aliases.values()), dtype=str)
        atomic_write(path, lambda tmp: np.savez_compressed(tmp, names=np.asarray(names, dtype=str),
                                                           provenance=np.asarray(text), **arrays))
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
            matrix = decode(z, str(path)) if "codes" in z.files else z["embeddings"]
            return [str(n) for n in z["names"]], matrix, json.loads(str(z["provenance"]))
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
