"""Fingerprints: what made a run, as hashes a folder records and later runs compare.

``fingerprint.json`` records the configuration as asked (``output`` left out: where a run lives is
not what it is), the input files (path, size, modification time), the data's content (a hash of
the expression matrix, full or over evenly spaced rows, and of the labels), the gene embeddings
used and the split. ``metrics.json`` carries the hashes, so reports can tell whether runs compare.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..files import json_safe

#: matrices with more rows are hashed over this many evenly spaced rows (plus the file's size and time)
SAMPLED_ROWS = 4096


def _digest(*parts: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """A file's content hash (what a run recorded of an output it wrote, to know it unchanged)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_identity(config: Any) -> dict[str, Any]:
    """The configuration as a plain mapping, without ``output``."""
    out = config.to_yaml_dict()
    out.pop("output", None)
    return out


def config_text(config: Any) -> str:
    """config.yaml: the configuration as run, with ``output.dir`` left empty (the file lives in the
    folder), so that ``ptrag run --config RUN/config.yaml`` reruns it into a new folder."""
    return config.model_copy(update={"output": config.output.model_copy(update={"dir": None})}).dump_yaml()


def input_files(paths: Mapping[str, str | None]) -> dict[str, dict[str, Any]]:
    """role -> {path, size, mtime_ns} for the named files that exist."""
    out = {}
    for role, value in paths.items():
        if value and Path(value).is_file():
            stat = Path(value).stat()
            out[role] = {"path": str(Path(value).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return out


def run_identity(config: Any, screen: Any = None) -> dict[str, Any]:
    """What makes a `ptrag run`: the configuration as asked and its input files; ``screen``, data
    handed over in memory (the Python API), stands in for ``data.path`` (:func:`memory_input`)."""
    data = config.data
    inputs = input_files({"data": data.path, "split": data.split,
                          "gene_embeddings": data.gene_embeddings, "gene_sets": data.gene_sets})
    if screen is not None:
        inputs["data"] = memory_input(screen)
    return {"kind": "run", "config": config_identity(config), "inputs": inputs}


def memory_input(screen: Any) -> dict[str, Any]:
    """An input that is no file (an AnnData in memory): its name and content hash, so a folder
    still tells which data made it."""
    return {"path": screen.source, "in_memory": True, "hash": data_fingerprint(screen)["hash"]}


def data_fingerprint(data: Any) -> dict[str, Any]:
    """Content hashes of a screen: the expression matrix (every row, or SAMPLED_ROWS evenly spaced
    rows of a larger one) and the labels (cell names, perturbation, cell line, batch, features)."""
    n, g = int(data.X.shape[0]), int(data.X.shape[1])
    rows = np.arange(n) if n <= SAMPLED_ROWS else np.unique(np.linspace(0, n - 1, SAMPLED_ROWS).astype(np.int64))
    block = np.ascontiguousarray(np.asarray(data.X[rows], dtype=np.float32))
    matrix = _digest(f"{n}x{g}", block.tobytes())
    labels = _digest(*("\n".join(data.obs[c].astype(str)) for c in data.obs.columns),
                     "\n".join(map(str, data.obs.index)), "\n".join(map(str, data.features)))
    return {"source": data.source, "cells": n, "features": g, "matrix": matrix,
            "matrix_rows_hashed": "all" if len(rows) == n else f"{len(rows)} of {n}",
            "labels": labels, "hash": _digest(matrix, labels)}


def split_fingerprint(split: Any) -> dict[str, Any]:
    parts = [f"{role}:{p}\t{c}" for role in ("train", "val", "test") for p, c in sorted(getattr(split, role))]
    return {"hash": _digest(*parts), "train": len(split.train), "val": len(split.val), "test": len(split.test)}


def embeddings_fingerprint(perts: list[str], vectors: Mapping[str, np.ndarray]) -> str:
    return _digest(*perts, *(np.asarray(vectors[p], dtype=np.float32).tobytes() for p in perts))


def content_fingerprint(data: Any, split: Any, vectors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """What a run computed on: the data, the split and the perturbations' gene embeddings."""
    return {"data": data_fingerprint(data), "split": split_fingerprint(split),
            "embeddings": {"hash": embeddings_fingerprint(list(data.perturbations), vectors)}}


def fingerprint_summary(identity: Mapping[str, Any], content: Mapping[str, Any],
                        seed: int | None = None) -> dict[str, Any]:
    """The hashes metrics.json carries, so `ptrag report` can tell whether runs are comparable."""
    config = _digest(json.dumps(json_safe(identity["config"]), sort_keys=True))
    return {"config": config, **{k: v["hash"] for k, v in content.items()}, "seed": seed}
