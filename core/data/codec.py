"""Compressed gene-embedding tables: PCA coordinates stored as int8 codes, decoded to unit vectors on read.

A GenePT-style table of every human protein-coding gene is ~20k x 384 float32 (31 MB); shipped
inside the package it must be a few MB. ``encode`` keeps the ``dims`` leading principal
components and stores each as int8 with its own scale; the ``.npz`` then holds, instead of
``embeddings``: ``codes`` [V,D] int8, ``scale`` [D] float32 (code x scale = the coordinate),
``basis`` [D,E] float32 (orthonormal rows) and ``mean`` [E] float32. ``decode`` maps back to
[V,E] unit vectors in the text model's own space, so a decoded table mixes with an uncompressed
one of the same model (the demo table), and every reader of ``.npz`` tables reads both.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

#: the arrays of a compressed table (besides ``names`` and ``provenance``)
KEYS = ("codes", "scale", "basis", "mean")
LEVELS = 127  # int8 codes in [-127, 127]: symmetric, so a coordinate and its negative round alike


def principal_axes(matrix: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean [E], basis [D,E], variance share of each axis [D]); each axis's sign fixed so that
    its largest loading is positive (the same table gives the same axes on any machine)."""
    x = np.asarray(matrix, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    values, vectors = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(values)[::-1][:dims]
    basis = vectors[:, order].T
    signs = np.sign(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)])
    basis *= signs[:, None]
    share = values[order] / values.sum()
    return mean, basis, share


def encode(matrix: np.ndarray, dims: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The arrays of a compressed table (``KEYS``) and the variance share each kept axis carries."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if not 1 <= dims <= matrix.shape[1]:
        raise DataError(f"--compress pca:{dims}: dims must be between 1 and the table's {matrix.shape[1]}")
    mean, basis, share = principal_axes(matrix, dims)
    coords = (matrix.astype(np.float64) - mean) @ basis.T
    scale = np.abs(coords).max(axis=0) / LEVELS
    scale[scale == 0] = 1.0
    codes = np.clip(np.rint(coords / scale), -LEVELS, LEVELS).astype(np.int8)
    arrays = {"codes": codes, "scale": scale.astype(np.float32), "basis": basis.astype(np.float32),
              "mean": mean.astype(np.float32)}
    return arrays, share


def decode(arrays: dict[str, np.ndarray], where: str = "<memory>") -> np.ndarray:
    """[V,E] float32 unit vectors from the arrays ``encode`` wrote; a file that does not fit says so."""
    codes, scale, basis, mean = (np.asarray(arrays[k]) for k in KEYS)
    if codes.ndim != 2 or scale.shape != (codes.shape[1],) or basis.shape[0] != codes.shape[1] \
            or basis.ndim != 2 or mean.shape != (basis.shape[1],):
        raise DataError(f"{where}: a compressed table needs codes [V,D], scale [D], basis [D,E] and mean [E]; got "
                        f"{codes.shape}, {scale.shape}, {basis.shape} and {mean.shape}")
    out = (codes.astype(np.float32) * scale.astype(np.float32)) @ basis.astype(np.float32) + mean.astype(np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)
