"""Every run against one baseline, setting by setting: wins, ties and losses, and by how much.

A *setting* is one (grid setting, seed) pair: for instance a simulator family, a data seed and a
training seed; a plain run and its comparisons (``compare/<preset>``) are one setting. In each, a
run is paired with the baseline's run of the same setting over the held-out perturbations they
both scored (a Wilcoxon signed-rank test); it wins when its mean is better with p < ``alpha``,
loses when worse with p < ``alpha``, else ties (identical: equal on every perturbation). The
improvement is relative to the baseline's mean, direction-aware (positive: better).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.paired import paired_tests
from .folders import directions, per_perturbation
from .labels import RunKey, label_runs

ALPHA = 0.01
HEADLINE = ("energy", "pearson-delta")
TARGET = 0.10  # "at least 10% better on both"


def settings_table(folders: Sequence[Path], baseline: str, alpha: float = ALPHA,
                   keys: Mapping[Path, RunKey] | None = None) -> pd.DataFrame:
    """One row per (run, setting, seed, metric): both means, the relative improvement, p, outcome.
    A run folder and its comparisons are one setting (``keys``: reporting/labels.py)."""
    keys = keys or label_runs([Path(f) for f in folders])
    index = {(k.name, k.setting, k.seed): f for f, k in keys.items()}
    rows = []
    for (preset, setting, seed), folder in index.items():
        base = index.get((baseline, setting, seed))
        if preset == baseline or base is None:
            continue
        dirs = directions([folder, base])
        tests = paired_tests(per_perturbation([folder]), per_perturbation([base]), dirs)
        for t in tests.itertuples():
            lower = t.direction == "lower"
            gain = (t.mean_b - t.mean_a) if lower else (t.mean_a - t.mean_b)
            better = gain > 0
            significant = np.isfinite(t.wilcoxon_p) and t.wilcoxon_p < alpha
            rows.append({"run": preset, "setting": setting, "seed": seed, "metric": t.metric, "n": t.n,
                         "mean": t.mean_a, "baseline_mean": t.mean_b,
                         "improvement": gain / abs(t.mean_b) if t.mean_b else float("nan"),
                         "p": t.wilcoxon_p, "identical": bool(t.identical),
                         "outcome": ("win" if better else "loss") if significant else "tie"})
    return pd.DataFrame(rows, columns=["run", "setting", "seed", "metric", "n", "mean", "baseline_mean",
                                       "improvement", "p", "identical", "outcome"])


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per run and metric: wins / ties / losses over the settings (``identical``: the ties equal on
    every perturbation) and the mean improvement."""
    rows = []
    for (run, metric), g in table.groupby(["run", "metric"], sort=False):
        counts = g.outcome.value_counts()
        rows.append({"run": run, "metric": metric, "settings": len(g), "wins": int(counts.get("win", 0)),
                     "ties": int(counts.get("tie", 0)), "identical": int(g.identical.sum()),
                     "losses": int(counts.get("loss", 0)), "mean_improvement": float(g.improvement.mean())})
    return pd.DataFrame(rows, columns=["run", "metric", "settings", "wins", "ties", "identical", "losses",
                                       "mean_improvement"])


def headline(table: pd.DataFrame, target: float = TARGET) -> pd.DataFrame:
    """Per run: in how many settings it is at least ``target`` better on both headline metrics, and in
    how many significantly worse on either."""
    rows = []
    for run, g in table[table.metric.isin(HEADLINE)].groupby("run", sort=False):
        wide = g.pivot_table(index=["setting", "seed"], columns="metric", values="improvement")
        worse = g[g.outcome == "loss"].groupby(["setting", "seed"]).size()
        both = (wide.reindex(columns=list(HEADLINE)) >= target).all(axis=1)
        rows.append({"run": run, "settings": len(wide), f"better_by_{int(target * 100)}pct_on_both": int(both.sum()),
                     "significantly_worse_on_either": int(len(worse))})
    return pd.DataFrame(rows)
