"""Paired comparisons over perturbations: two runs scored on the same held-out groups.

Two scores of one perturbation that differ by at most ``IDENTICAL`` relative to the larger, or
absolutely for scores below 1, are equal: the same predictions scored twice can differ in the last
bits (summation order), and a signed-rank test would read that noise as a difference. The noise
is that of the score's float32 inputs, so a correlation near 0 carries it too (2e-8 on a pearson
of 0.01 is not a difference). Runs equal on every perturbation are reported identical.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

COLUMNS = ["metric", "direction", "n", "mean_a", "mean_b", "mean_diff", "win_rate_a", "wilcoxon_p", "identical"]
IDENTICAL = 1e-6  # difference (relative, absolute below 1) under which two scores of one perturbation are equal


def paired_tests(long_a: pd.DataFrame, long_b: pd.DataFrame, dirs: dict[str, str]) -> pd.DataFrame:
    """Per metric, over the groups both long tables (pert, context, metric, value) scored: means,
    mean of A - B, A's win rate (direction-aware, ties count half) and the Wilcoxon signed-rank
    p-value of the paired differences (1 when there are none); ``identical``: equal on every group."""
    joined = long_a.merge(long_b, on=["pert", "context", "metric"], suffixes=("_a", "_b"))
    rows = []
    for metric, g in joined.groupby("metric", sort=False):
        g = g[np.isfinite(g.value_a) & np.isfinite(g.value_b)]
        a, b = g.value_a.to_numpy(), g.value_b.to_numpy()
        diff = a - b
        diff[np.abs(diff) <= IDENTICAL * np.maximum(np.maximum(np.abs(a), np.abs(b)), 1.0)] = 0.0
        sign = -1.0 if dirs.get(metric, "lower") == "lower" else 1.0
        better = sign * diff
        try:
            p = float(wilcoxon(diff).pvalue) if len(diff) and np.any(diff != 0) else 1.0
        except ValueError:
            p = float("nan")
        rows.append({"metric": metric, "direction": dirs.get(metric, "?"), "n": len(diff),
                     "mean_a": float(g.value_a.mean()) if len(g) else float("nan"),
                     "mean_b": float(g.value_b.mean()) if len(g) else float("nan"),
                     "mean_diff": float(diff.mean()) if len(diff) else float("nan"),
                     "win_rate_a": float(((better > 0) + 0.5 * (better == 0)).mean()) if len(diff) else float("nan"),
                     "wilcoxon_p": p, "identical": bool(len(diff)) and not np.any(diff != 0)})
    return pd.DataFrame(rows, columns=COLUMNS)
