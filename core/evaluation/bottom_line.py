"""The bottom line of a comparison, in one sentence that claims no difference the tests do not support.

Per headline metric the run with the best mean is named with every run the paired Wilcoxon test
over perturbations cannot tell from it (p >= ``ALPHA``, or a median that disagrees with the
means); runs equal to it on every perturbation (paired.py ``IDENTICAL``) are called identical, not
tied. Whether retrieval helped is the verdicts' (verdict.py): a retrieval model or ensemble that
beat the best baseline on every headline metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .aggregate import fmt
from .paired import paired_tests
from .verdict import ALPHA, PRIMARY, Verdict


@dataclass
class Scored:
    """A run (or the seeds of one configuration) as the bottom line and the verdicts read it."""

    label: str
    metrics: pd.DataFrame  # long table: pert, context, metric, value (seeds averaged)
    directions: dict[str, str]
    training: dict[str, Any] | None = None  # None: an untrained baseline
    uses_retrieval: bool = False
    members: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, dict[str, Any]]:
        """metric -> mean over perturbations (finite values, as metrics.json) and direction."""
        out = {}
        for metric, direction in self.directions.items():
            values = self.metrics.loc[self.metrics.metric == metric, "value"].to_numpy(float)
            finite = values[np.isfinite(values)]
            out[metric] = {"mean": float(finite.mean()) if len(finite) else float("nan"), "direction": direction}
        return out


@dataclass
class Best:
    metric: str
    best: list[str]  # the best run and the runs identical to it
    tied: list[tuple[str, float]]  # (run, p): not significantly different from the best
    n: int  # perturbations paired


def best_on(runs: Sequence[Scored], metric: str) -> Best | None:
    """The best run on ``metric`` and the runs the paired tests cannot tell from it."""
    scored = [r for r in runs if metric in r.directions and np.isfinite(r.summary[metric]["mean"])]
    if not scored:
        return None
    direction = scored[0].directions[metric]
    pick = min if direction == "lower" else max
    top = pick(scored, key=lambda r: r.summary[metric]["mean"])
    best, tied, n = [top.label], [], 0
    for other in (r for r in scored if r is not top):
        test = paired_tests(top.metrics[top.metrics.metric == metric], other.metrics[other.metrics.metric == metric],
                            {metric: direction})
        if test.empty:
            continue
        row = test.iloc[0]
        n = max(n, int(row["n"]))
        if row["identical"]:
            best.append(other.label)
        elif not (row["wilcoxon_p"] < ALPHA and row["win_rate_a"] > 0.5):
            tied.append((other.label, float(row["wilcoxon_p"])))
    return Best(metric, best, tied, n)


def _best_text(b: Best) -> str:
    text = " = ".join(b.best) + (" (identical results)" if len(b.best) > 1 else "") + f" on {b.metric}"
    if b.tied:
        names = [name for name, _ in b.tied]
        listed = ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1]
        if all(p >= ALPHA for _, p in b.tied):
            text += f", not significantly better than {listed} (p ≥ {ALPHA})"
        else:  # a signed-rank test that disagrees with the means: each p said
            text += ", not clearly better than " + ", ".join(f"{name} (p = {fmt(p)})" for name, p in b.tied)
    return text


def _retrieval_text(verdicts: Sequence[Verdict], primary: Sequence[str]) -> str:
    both = " and ".join(primary)
    helped = [v.run for v in verdicts if v.beat]
    if helped:
        return f"retrieval helped: {', '.join(helped)} beat the best baseline on {both}"
    same = [v for v in verdicts if len(v.tests) and bool(v.tests["identical"].all())]
    text = f"retrieval did not help: no retrieval model or ensemble beat the best baseline on {both}"
    by_baseline: dict[str, list[str]] = {}
    for v in same:
        by_baseline.setdefault(" and ".join(dict.fromkeys(v.tests.baseline)), []).append(v.run)
    if by_baseline:
        text += " (" + "; ".join(f"{' and '.join(runs)} score{'s' if len(runs) == 1 else ''} identically to {base}"
                                 for base, runs in by_baseline.items()) + ")"
    return text


def bottom_line(runs: Sequence[Scored], verdicts: Sequence[Verdict], primary: Sequence[str] = PRIMARY,
                where: str = "on this split") -> str | None:
    """One sentence: the best run per headline metric, its ties, and whether retrieval helped
    (None for fewer than two runs: nothing to compare)."""
    if len(runs) < 2:
        return None
    bests = [b for b in (best_on(runs, m) for m in primary) if b is not None]
    if not bests:
        return None
    n = max(b.n for b in bests)
    text = (f"Best {where} (paired Wilcoxon over {n} held-out perturbations, p < {ALPHA}): "
            + "; ".join(_best_text(b) for b in bests))
    if verdicts:
        text += "; " + _retrieval_text(verdicts, primary)
    return text + "."
