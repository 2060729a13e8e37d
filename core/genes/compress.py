"""``ptrag genes build --compress pca:D``: a table small enough to ship, and what the compression costs.

Retrieval reads a gene table only through cosine neighbours, so the cost is measured there: for a
seeded sample of genes, the overlap of each gene's top-k neighbours in the full table and in the
decoded one, and the Spearman correlation of its similarities to every other gene. The figures go
into the table's provenance (the shipped README quotes them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..data.codec import decode, encode
from ..errors import ConfigError

SPEC = re.compile(r"pca:(\d+)")
NEIGHBOURS = 32  # the default retriever's k
SAMPLE = 2000


@dataclass
class Compressed:
    arrays: dict[str, np.ndarray]  # what the .npz stores instead of `embeddings`
    provenance: dict


def parse_spec(spec: str | None) -> int | None:
    """``None``/``none`` (store the table as it is) or ``pca:D`` -> D."""
    if spec is None or spec.lower() == "none":
        return None
    match = SPEC.fullmatch(spec.strip().lower())
    if match is None or int(match.group(1)) < 1:
        raise ConfigError(f"--compress {spec!r}: use pca:D (D principal components as int8, e.g. pca:256) or none")
    return int(match.group(1))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _ranks(rows: np.ndarray) -> np.ndarray:
    out = np.empty_like(rows, dtype=np.float64)
    order = rows.argsort(axis=1)
    np.put_along_axis(out, order, np.broadcast_to(np.arange(rows.shape[1], dtype=np.float64), rows.shape), axis=1)
    return out


def neighbour_fidelity(full: np.ndarray, approx: np.ndarray, k: int = NEIGHBOURS, sample: int = SAMPLE,
                       seed: int = 0, chunk: int = 250) -> dict:
    """Top-k cosine-neighbour overlap and Spearman of similarities, ``full`` vs ``approx`` (same rows)."""
    full, approx = _unit(full), _unit(approx)
    n = len(full)
    k = min(k, n - 1)
    queries = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    overlap, spearman = [], []
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        keep = np.ones((len(q), n), dtype=bool)
        keep[np.arange(len(q)), q] = False  # a gene is not its own neighbour
        a = (full[q] @ full.T)[keep].reshape(len(q), n - 1)
        b = (approx[q] @ approx.T)[keep].reshape(len(q), n - 1)
        top_a = np.argpartition(-a, k - 1, axis=1)[:, :k]
        top_b = np.argpartition(-b, k - 1, axis=1)[:, :k]
        overlap += [len(np.intersect1d(x, y)) / k for x, y in zip(top_a, top_b, strict=True)]
        ra, rb = _ranks(a), _ranks(b)
        ra -= ra.mean(axis=1, keepdims=True)
        rb -= rb.mean(axis=1, keepdims=True)
        spearman += list((ra * rb).sum(1) / np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1)))
    cosine = (full * approx).sum(axis=1)
    overlap, spearman = np.asarray(overlap), np.asarray(spearman)
    return {"k": k, "queries": len(queries), "seed": seed,
            "top_k_overlap_mean": round(float(overlap.mean()), 4),
            "top_k_overlap_p5": round(float(np.percentile(overlap, 5)), 4),
            "top_k_overlap_min": round(float(overlap.min()), 4),
            "spearman_mean": round(float(np.mean(spearman)), 4),
            "spearman_min": round(float(np.min(spearman)), 4),
            "cosine_to_full_mean": round(float(cosine.mean()), 4),
            "cosine_to_full_min": round(float(cosine.min()), 4)}


def compress(matrix: np.ndarray, dims: int) -> Compressed:
    """PCA to ``dims`` int8 coordinates (core/data/codec.py) and the fidelity of the decoded table."""
    arrays, share = encode(matrix, dims)
    decoded = decode(arrays)
    provenance = {"method": f"pca:{dims}", "codes": "int8, one scale per component (max |coordinate| / 127)",
                  "dims": dims, "from_dims": int(np.asarray(matrix).shape[1]),
                  "variance_kept": round(float(share.sum()), 4), "decoded": "mean + (codes * scale) @ basis, "
                  "then unit length", "fidelity": neighbour_fidelity(matrix, decoded)}
    return Compressed(arrays, provenance)
