"""``ptrag data prepare``: a raw-count screen made ready for ptrag (log-normalised, optionally fewer genes).

ptrag models log-normalised expression, the Replogle-Nadig release's form: each cell's counts
scaled to ``target_sum`` (10,000) and log1p'd. A screen of raw UMI counts is refused by ``ptrag
run`` (it would read them as expression); this step does the normalisation once, keeps the counts
in ``layers['counts']``, and with ``n_top_genes`` keeps only the most variable genes (variance of
the log-normalised expression over all cells, as a simple, documented rule) plus the perturbed
genes measured in the screen, so the on-target knock-down stays visible. The cells, their labels
and every obs column are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ..errors import DataError

TARGET_SUM = 1e4


@dataclass
class Prepared:
    adata: ad.AnnData
    counts_from: str  # "X" or "layers['<key>']"
    genes_in: int
    genes_kept: int
    targets_kept: int


def _counts(adata: ad.AnnData, layer: str | None, source: str) -> tuple[Any, str]:
    """The raw counts: ``layers[layer]`` if named, else X (refused unless they are counts)."""
    if layer not in (None, "X"):
        if layer not in adata.layers:
            raise DataError(f"{source}: no layer {layer!r}; layers: {', '.join(adata.layers) or 'none'} "
                            "(--counts-layer X uses .X)")
        return adata.layers[layer], f"layers[{layer!r}]"
    if adata.X is None:
        raise DataError(f"{source}: .X is empty; name the layer holding the counts (--counts-layer counts)")
    return adata.X, "X"


def _check_counts(matrix: Any, where: str, source: str) -> None:
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix).ravel()
    sample = values[:: max(1, len(values) // 1_000_000)] if len(values) else values
    if len(sample) and (np.any(sample < 0) or np.any(sample != np.round(sample))):
        raise DataError(f"{source}: {where} does not hold raw counts (negative or non-integer values, e.g. "
                        f"{sample[(sample < 0) | (sample != np.round(sample))][0]:.4g}); if it is already "
                        "log-normalised, skip `ptrag data prepare` and run with --embed-key X")


def log_normalise(counts: Any, target_sum: float = TARGET_SUM) -> sp.csr_matrix:
    """Counts scaled to ``target_sum`` per cell, then log1p (cells without counts stay at 0)."""
    matrix = sp.csr_matrix(counts, dtype=np.float64)
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    out = sp.diags(scale) @ matrix
    out.data = np.log1p(out.data)
    return sp.csr_matrix(out, dtype=np.float32)


def _variances(matrix: sp.csr_matrix) -> np.ndarray:
    mean = np.asarray(matrix.mean(axis=0)).ravel()
    sq = np.asarray(matrix.multiply(matrix).mean(axis=0)).ravel()
    return sq - mean * mean


def prepare_counts(adata: ad.AnnData, *, source: str, pert_col: str = "gene", layer: str | None = None,
                   target_sum: float = TARGET_SUM, n_top_genes: int | None = None) -> Prepared:
    """The screen with X log-normalised (and the counts in ``layers['counts']``)."""
    if pert_col not in adata.obs:
        raise DataError(f"{source}: obs has no perturbation column {pert_col!r}; columns: "
                        f"{', '.join(map(str, adata.obs.columns)) or 'none'} (--pert-col)")
    if not target_sum > 0 or not np.isfinite(target_sum):  # NaN compares false both ways
        raise DataError(f"--target-sum {target_sum:g}: must be a finite number above 0 (10,000 is the usual)")
    counts, where = _counts(adata, layer, source)
    _check_counts(counts, where, source)
    normalised = log_normalise(counts, target_sum)
    genes = np.asarray(adata.var_names.astype(str))
    keep = np.ones(len(genes), dtype=bool)
    targets = np.isin(genes, adata.obs[pert_col].astype(str).unique())
    if n_top_genes is not None:
        if n_top_genes < 1:
            raise DataError(f"--n-top-genes {n_top_genes}: keep at least one gene (or leave it out to keep all)")
        order = np.argsort(-_variances(normalised), kind="stable")
        keep = np.zeros(len(genes), dtype=bool)
        keep[order[:n_top_genes]] = True
        keep |= targets
    out = ad.AnnData(X=normalised[:, keep], obs=adata.obs.copy(), var=adata.var.loc[keep].copy(),
                     layers={"counts": sp.csr_matrix(counts)[:, keep].astype(np.float32)})
    out.uns["ptrag_prepare"] = {"source": source, "counts_from": where, "target_sum": float(target_sum),
                                "n_top_genes": int(n_top_genes) if n_top_genes else None,
                                "transform": "log1p(counts / total counts per cell x target_sum)",
                                "genes_in": int(len(genes)), "genes_kept": int(keep.sum())}
    return Prepared(out, where, len(genes), int(keep.sum()), int((targets & keep).sum()))


def read_raw(path: str | Path) -> ad.AnnData:
    """The raw screen, read in memory with anndata (one file, one error line if it is not .h5ad)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        return ad.read_h5ad(path)
    except Exception as exc:  # h5py/anndata's own errors for a file that is not an .h5ad
        raise DataError(f"{path}: not a readable .h5ad ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") \
            from None
