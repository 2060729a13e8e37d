"""Principal axes of expression: where distributional metrics and the PC-energy loss compare cells."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_PCS = 50


@dataclass
class PCA:
    """Principal axes of one cell line; ``transform`` centres and projects."""

    mean: np.ndarray  # [F]
    components: np.ndarray  # [F,P]

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components


def fit_pca(blocks: Sequence[np.ndarray], n_pcs: int = N_PCS) -> PCA:
    """Exact PCA from the covariance matrix (memory O(F^2), linear in cells; no copy of the cells)."""
    n = sum(len(b) for b in blocks)
    f = blocks[0].shape[1]
    mean = sum(np.asarray(b, dtype=np.float64).sum(axis=0) for b in blocks) / n
    cov = np.zeros((f, f))
    for b in blocks:
        c = np.asarray(b, dtype=np.float64) - mean
        cov += c.T @ c
    k = max(1, min(n_pcs, f, n))
    vals, vecs = np.linalg.eigh(cov / max(n - 1, 1))
    order = np.argsort(vals)[::-1][:k]
    vecs = vecs[:, order]
    vecs *= np.where(vecs[np.abs(vecs).argmax(axis=0), np.arange(k)] < 0, -1.0, 1.0)  # fixed signs
    return PCA(mean, vecs)
