"""Paired comparisons over perturbations: two runs scored on the same held-out groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

COLUMNS = ["metric", "direction", "n", "mean_a", "mean_b", "mean_diff", "win_rate_a", "wilcoxon_p"]


def paired_tests(long_a: pd.DataFrame, long_b: pd.DataFrame, dirs: dict[str, str]) -> pd.DataFrame:
    """Per metric, over the groups both long tables (pert, context, metric, value) scored: means,
    mean of A - B, A's win rate (direction-aware, ties count half) and the Wilcoxon signed-rank
    p-value of the paired differences."""
    joined = long_a.merge(long_b, on=["pert", "context", "metric"], suffixes=("_a", "_b"))
    rows = []
    for metric, g in joined.groupby("metric", sort=False):
        g = g[np.isfinite(g.value_a) & np.isfinite(g.value_b)]
        diff = (g.value_a - g.value_b).to_numpy()
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
                     "wilcoxon_p": p})
    return pd.DataFrame(rows, columns=COLUMNS)
