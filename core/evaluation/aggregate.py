"""Per-metric aggregates over held-out perturbations: mean, median and a bootstrap interval."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..interfaces import Metric
from .scoring import metric_label


def fmt(x: Any) -> str:
    """A number as tables print it (4 significant digits; nan for missing)."""
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def bootstrap_interval(values: np.ndarray, rng: np.random.Generator, n_boot: int = 2000,
                       level: float = 0.95) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    means = rng.choice(values, size=(n_boot, len(values)), replace=True).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def aggregate(table: pd.DataFrame, metrics: dict[str, Metric], seed: int = 0) -> dict[str, Any]:
    """Mean, median and a 95% bootstrap interval over perturbations, per metric (NaNs left out)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, metric in metrics.items():
        label = metric_label(name, metric)
        values = table.loc[table.metric == label, "value"].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        lo, hi = bootstrap_interval(values, rng)
        out[label] = {
            "mean": float(finite.mean()) if len(finite) else float("nan"),
            "median": float(np.median(finite)) if len(finite) else float("nan"),
            "ci95": [lo, hi],
            "n": int(len(finite)),
            "direction": metric.direction,
            "space": metric.space,
        }
    return out


def summary_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """:func:`aggregate`'s dict (metrics.json's ``metrics``) as a table indexed by metric."""
    rows = [{"metric": name, "mean": agg["mean"], "median": agg["median"], "ci95_lo": agg["ci95"][0],
             "ci95_hi": agg["ci95"][1], "n": agg.get("n"), "direction": agg["direction"], "space": agg.get("space")}
            for name, agg in summary.items()]
    columns = ["metric", "mean", "median", "ci95_lo", "ci95_hi", "n", "direction", "space"]
    return pd.DataFrame(rows, columns=columns).set_index("metric")
