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
            "undefined": int(len(values) - len(finite)),  # groups where the metric has no value (NaN)
            "direction": metric.direction,
            "space": metric.space,
        }
    return out


def undefined_notes(table: pd.DataFrame) -> list[str]:
    """``note:`` lines for metrics that had no value (NaN) for some groups, one per set of groups:
    those groups are left out of the metric's mean and interval, which then cover fewer groups
    than the run predicted, so a run says so instead of dropping them silently."""
    missing: dict[tuple[str, ...], list[str]] = {}
    totals: dict[str, int] = {}
    for label, rows in table.groupby("metric", sort=False):
        bad = rows[~np.isfinite(rows["value"].to_numpy(dtype=float))]
        totals[str(label)] = len(rows)
        if len(bad):
            missing.setdefault(tuple(f"{p} in {c}" for p, c in zip(bad["pert"], bad["context"], strict=True)),
                               []).append(str(label))
    notes = []
    for groups, labels in missing.items():
        total, n, one = totals[labels[0]], len(groups), len(labels) == 1
        rest = (f"{'it has' if one else 'they have'} no mean in this run" if n == total else
                f"{'its mean and interval cover' if one else 'their means and intervals cover'} the other {total - n}")
        notes.append(f"note: {', '.join(labels)} {'is' if one else 'are'} undefined for {n} of {total} group(s) "
                     f"(first: {groups[0]}; e.g. a correlation with a real change that is constant, or a set metric "
                     f"with one group in a cell line); {rest} (metrics.json: undefined)")
    return notes


def summary_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """:func:`aggregate`'s dict (metrics.json's ``metrics``) as a table indexed by metric."""
    rows = [{"metric": name, "mean": agg["mean"], "median": agg["median"], "ci95_lo": agg["ci95"][0],
             "ci95_hi": agg["ci95"][1], "n": agg.get("n"), "direction": agg["direction"], "space": agg.get("space")}
            for name, agg in summary.items()]
    columns = ["metric", "mean", "median", "ci95_lo", "ci95_hi", "n", "direction", "space"]
    return pd.DataFrame(rows, columns=columns).set_index("metric")
