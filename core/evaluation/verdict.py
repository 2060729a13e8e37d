"""Does retrieval earn its keep? Each trained retrieval run against the best simple baseline.

A run's ``compare:`` presets share its data, split and seed, so their per-perturbation scores
pair up. For each primary metric the best baseline (the untrained comparators: gene-other-lines,
neighbour-mean, pert-mean, ...) is the one with the best mean; the retrieval run beats it when its
mean is better *and* the paired Wilcoxon signed-rank test over perturbations gives p < ``ALPHA``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .aggregate import fmt
from .paired import IDENTICAL, paired_tests

PRIMARY = ("energy", "pearson-delta")
ALPHA = 0.01


@dataclass
class Verdict:
    run: str
    tests: pd.DataFrame  # one row per primary metric: baseline, means, win rate, p, outcome
    beat: bool  # better than the best baseline on every primary metric, each with p < ALPHA

    @property
    def text(self) -> str:
        parts = [f"{r.metric} {fmt(r.mean_a)} vs {r.baseline} {fmt(r.mean_b)} "
                 + (f"({r.outcome} on every perturbation)" if r.identical
                    else f"({r.outcome}, p = {fmt(r.wilcoxon_p)})") for r in self.tests.itertuples()]
        n = int(self.tests["n"].max()) if len(self.tests) else 0
        head = "beat" if self.beat else "did not beat"
        return (f"retrieval vs best baseline: {self.run} {head} the best baseline "
                f"(paired Wilcoxon over {n} perturbations, p < {ALPHA}): " + "; ".join(parts))


def _label(result: Any) -> str:
    """A run's name: a report's label, else the preset it ran."""
    label = getattr(result, "label", None)
    return label if isinstance(label, str) else (result.config.preset or "custom")


def is_baseline(result: Any) -> bool:
    return result.training is None


def uses_retrieval(result: Any) -> bool:
    """A trained run whose model used retrieved candidates (declared by its components), or an
    ensemble of trained members (a stack): the runs a verdict is for."""
    return result.training is not None and (bool(getattr(result, "uses_retrieval", False))
                                            or bool(getattr(result, "members", None)))


def retrieval_verdicts(runs: Sequence[Any], primary: Sequence[str] = PRIMARY) -> list[Verdict]:
    """A verdict for each trained retrieval run in ``runs`` (a run and its comparisons)."""
    baselines = [r for r in runs if is_baseline(r)]
    out = []
    for run in (r for r in runs if uses_retrieval(r)):
        rows = []
        for metric in primary:
            agg = run.summary.get(metric)
            candidates = [b for b in baselines if metric in b.summary]
            if agg is None or not candidates:
                continue
            lower = agg["direction"] == "lower"
            best = (min if lower else max)(candidates, key=lambda b: b.summary[metric]["mean"])
            test = paired_tests(run.metrics[run.metrics.metric == metric],
                                best.metrics[best.metrics.metric == metric], {metric: agg["direction"]})
            if test.empty:
                continue
            row = test.iloc[0].to_dict()
            better = row["mean_diff"] < 0 if lower else row["mean_diff"] > 0
            significant = row["wilcoxon_p"] < ALPHA
            row["outcome"] = f"identical within {IDENTICAL:g}" if row["identical"] else \
                ("better" if better else "worse") if significant else \
                ("better, not significant" if better else "worse, not significant")
            rows.append({"baseline": _label(best), **row})
        tests = pd.DataFrame(rows, columns=["metric", "baseline", "direction", "n", "mean_a", "mean_b", "mean_diff",
                                            "win_rate_a", "wilcoxon_p", "identical", "outcome"])
        beat = len(tests) == len(primary) and bool((tests["outcome"] == "better").all())
        out.append(Verdict(_label(run), tests, beat))
    return out


def start_name(members: Sequence[str]) -> str:
    """What a protected start is called: an ensemble's backbone (its first member), else the untrained model."""
    return members[0] if members else "the untrained start"


def describe_fit(label: str, training: dict[str, Any] | None, start: str = "the untrained start") -> str | None:
    """In words: what a calibrated ensemble fitted (its weights), and which state the selection rule
    kept with both validation scores; None for a run with neither."""
    training = training or {}
    calibration, selection = training.get("calibration") or {}, training.get("selection") or {}
    weights = calibration.get("weights") or {}
    parts = []
    if weights:
        # a run made before the stack fitted group means counted cell sets
        on = (f"{calibration['validation_groups']} validation perturbation(s)" if "validation_groups" in calibration
              else f"{calibration.get('validation_sets', '?')} validation cell sets")
        for member, w in weights.items():
            parts.append(f"{label}: weight of {member} {w:.3g}, fitted on {on} (each "
                         f"perturbation's predicted mean = {start}'s + weight x ({member}'s - {start}'s); shrink "
                         f"{calibration.get('shrink', '?')}).")
    if selection:
        changed, what = ("calibrated", "fitted") if weights else ("trained", "trained")
        scores = {m: selection.get("validation", {}).get(m) or {} for m in PRIMARY}
        mine = ", ".join(f"{m} {fmt(scores[m].get(changed))}" for m in PRIMARY)
        theirs = ", ".join(f"{m} {fmt(scores[m].get('start'))}" for m in PRIMARY)
        decision = (f"better on both, so the {what} {label} was kept" if selection.get("kept") != "start" else
                    f"not better on both, so {start} was kept" + (f" ({label} predicts exactly its cells)"
                                                                  if weights else ""))
        parts.append(f"{'On' if weights else label + ': on'} {selection.get('groups', '?')} validation perturbation(s) "
                     f"the {what} model scored {mine}; {start} scored {theirs}: {decision}.")
    return " ".join(parts) or None
