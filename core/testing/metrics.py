"""The metric contract suite (``ptrag.core.testing``).

A metric is checked through ``make(ctx)`` (a :class:`BuildContext` gives the gene names)::

    from ptrag.core.testing import MetricContract

    class TestMyMetric(MetricContract):
        @pytest.fixture
        def make_metric(self):
            return lambda ctx: MyMetric()

The inputs are non-negative, log1p-like cells in a metric's space (genes, or 50 PCs for
``pca50`` metrics); the checks ask what any score must do: be a number, find a perfect prediction
at least as good as a clearly wrong one, and (set metrics) give one value per group.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..components.guards import ContractError, check_metric_value, check_set_values
from ..hookspecs import BuildContext
from ..interfaces import LineCells, Metric, SetMetric
from . import fixtures as fx

MakeMetric = Callable[[BuildContext], Metric]
N_GROUPS = 4


def _built(make: MakeMetric) -> Metric:
    metric = make(fx.build_context())
    assert isinstance(metric, Metric), f"make(ctx) returned {type(metric).__name__}, not a Metric"
    return metric


def _label(metric: Metric) -> str:
    return getattr(metric, "name", "") or type(metric).__name__


def groups(seed: int = 0, n: int = N_GROUPS) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` real groups, each shifted from the controls on its own genes, and the controls."""
    rng = np.random.default_rng(seed)
    ctrl = rng.gamma(2.0, 0.6, (40, fx.G))
    reals = []
    for i in range(n):
        shift = np.zeros(fx.G)
        shift[(3 * i) % fx.G:(3 * i) % fx.G + 3] = 1.5 * (1 if i % 2 else -1)
        reals.append(np.clip(rng.gamma(2.0, 0.6, (30, fx.G)) + shift, 0, None))
    return reals, ctrl


def _better_or_equal(metric: Metric, good: float, bad: float) -> bool:
    return good <= bad + 1e-9 if metric.direction == "lower" else good >= bad - 1e-9


def _values(metric: Metric, preds: list[np.ndarray], reals: list[np.ndarray], ctrl: np.ndarray) -> np.ndarray:
    try:
        if isinstance(metric, SetMetric):
            line = LineCells(preds, reals, ctrl, [(f"G{i}", "lineA") for i in range(len(preds))])
            return check_set_values(metric.compute_set(line), len(preds), _label(metric))
        return np.array([check_metric_value(metric.compute(p, r, ctrl), _label(metric))
                         for p, r in zip(preds, reals, strict=True)])
    except ContractError as exc:
        raise AssertionError(str(exc)) from None


def check_declarations(make: MakeMetric) -> None:
    """``direction`` is lower or higher, ``space`` genes, pca50 or de."""
    metric = _built(make)
    assert metric.direction in ("lower", "higher"), f"{_label(metric)}: direction {metric.direction!r}"
    assert metric.space in ("genes", "pca50", "de"), f"{_label(metric)}: space {metric.space!r}"


def check_perfect_beats_wrong(make: MakeMetric) -> None:
    """The real cells themselves score at least as well as another group's cells, on average,
    and the values are numbers (finite here)."""
    metric = _built(make)
    reals, ctrl = groups()
    perfect = _values(metric, [r.copy() for r in reals], reals, ctrl)
    wrong = _values(metric, [reals[(i + 1) % len(reals)] for i in range(len(reals))], reals, ctrl)
    assert np.isfinite(perfect).all() and np.isfinite(wrong).all(), \
        f"{_label(metric)}: non-finite values on ordinary groups: {perfect}, {wrong}"
    assert _better_or_equal(metric, float(perfect.mean()), float(wrong.mean())), \
        f"{_label(metric)} ({metric.direction} is better): a perfect prediction scores {perfect.mean():.4g}, a wrong " \
        f"one {wrong.mean():.4g}"


def check_one_value_per_group(make: MakeMetric) -> None:
    """As many values as groups, in their order (a set metric) or one per call."""
    metric = _built(make)
    reals, ctrl = groups(seed=1, n=3)
    values = _values(metric, reals, reals, ctrl)
    assert len(values) == 3, f"{_label(metric)}: {len(values)} values for 3 groups"


def check_metric(make: MakeMetric) -> None:
    """Every metric check."""
    check_declarations(make)
    check_perfect_beats_wrong(make)
    check_one_value_per_group(make)


class MetricContract:
    """pytest-style base class: subclass it (named ``Test...``) and define a ``make_metric``
    fixture returning ``make(ctx) -> Metric``."""

    def test_declarations(self, make_metric: MakeMetric) -> None:
        check_declarations(make_metric)

    def test_perfect_beats_wrong(self, make_metric: MakeMetric) -> None:
        check_perfect_beats_wrong(make_metric)

    def test_one_value_per_group(self, make_metric: MakeMetric) -> None:
        check_one_value_per_group(make_metric)
