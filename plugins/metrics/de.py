"""Differential-expression metrics: are the right genes changed, in the right direction?

DE genes are the top-k genes by |mean change from control| (a ranking, not a test: the metrics
must work on a handful of cells and on pseudobulk-free predictions alike). A group whose real
cells do not change at all has no DE genes: the metrics are undefined (NaN) for it.
"""

from __future__ import annotations

import numpy as np

from ptrag.core.hookspecs import MetricSpec, hookimpl, params_factory
from ptrag.core.interfaces import Metric
from ptrag.core.registry import builtin_specs

from .expression import TopKParams, mean_delta, top_de  # noqa: F401 (TopKParams: named by registry.yaml)


class DEOverlap(Metric):
    """Fraction of the real top-k DE genes that are also among the predicted top-k."""

    direction = "higher"
    space = "de"

    def __init__(self, k: int = 20):
        self.k = k
        self.label = f"de-overlap@{k}"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        real_delta = mean_delta(real, ctrl)
        if not np.any(real_delta):
            return float("nan")  # no gene changes: no DE genes to find
        real_top = top_de(real_delta, self.k)
        pred_top = top_de(mean_delta(pred, ctrl), self.k)
        return len(np.intersect1d(real_top, pred_top)) / len(real_top)


class DEDirection(Metric):
    """Fraction of the real top-k DE genes whose predicted change has the real change's sign.

    A zero predicted change agrees with nothing, so predicting no effect scores 0.
    """

    direction = "higher"
    space = "de"

    def __init__(self, k: int = 20):
        self.k = k
        self.label = f"de-direction@{k}"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        real_delta = mean_delta(real, ctrl)
        if not np.any(real_delta):
            return float("nan")  # no gene changes: no DE genes, no direction
        genes = top_de(real_delta, self.k)
        return float(np.mean(np.sign(mean_delta(pred, ctrl)[genes]) == np.sign(real_delta[genes])))


make_de_overlap = params_factory(DEOverlap, "k")
make_de_direction = params_factory(DEDirection, "k")


@hookimpl
def ptrag_metrics() -> list[MetricSpec]:
    return builtin_specs("metric", __name__)
