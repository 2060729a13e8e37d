"""Predicted against real differentially expressed genes, perturbation by perturbation.

The DE genes of a group are its top-k genes by |mean change from control| (the ranking of
``de-overlap@k`` and ``de-direction@k``, plugins/metrics/de.py): per group the real and the
predicted top-k, how many the prediction found (``overlap``: the share of the real top-k among the
predicted top-k) and whether it moved them the right way (``direction``: the share of the real
top-k whose predicted change has the real sign). Genes are listed by |real change|, each with the
sign of its change (``+`` up, ``-`` down).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

COLUMNS = ["pert", "context", "k", "real_de_genes", "predicted_de_genes", "found", "overlap", "direction",
           "real_change_size"]


def top_de(delta: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` genes with the largest |mean change| (ties broken by gene order)."""
    return np.argsort(-np.abs(delta), kind="stable")[:min(k, len(delta))]


def _named(genes: Sequence[str], delta: np.ndarray, idx: np.ndarray) -> str:
    return ";".join(f"{genes[i]}{'+' if delta[i] > 0 else '-' if delta[i] < 0 else '0'}" for i in idx)


def de_table(groups: Sequence[tuple[str, str]], genes: Sequence[str], pred: np.ndarray, real: np.ndarray,
             k: int = 20) -> pd.DataFrame:
    """One row per group (see the module docstring); a group whose real cells do not change has no
    DE genes: its overlap and direction are NaN."""
    rows = []
    for (pert, context), p, r in zip(groups, pred, real, strict=True):
        changes = bool(np.any(r))
        real_top, pred_top = top_de(r, k), top_de(p, k)
        found = [genes[i] for i in real_top if i in set(pred_top)] if changes else []
        rows.append({
            "pert": pert, "context": context, "k": len(real_top),
            "real_de_genes": _named(genes, r, real_top) if changes else "",
            "predicted_de_genes": _named(genes, p, pred_top),
            "found": ";".join(found),
            "overlap": len(found) / len(real_top) if changes else float("nan"),
            "direction": float(np.mean(np.sign(p[real_top]) == np.sign(r[real_top]))) if changes else float("nan"),
            "real_change_size": float(np.linalg.norm(r.astype(np.float64))),
        })
    return pd.DataFrame(rows, columns=COLUMNS)
