"""Differential-expression metrics: are the right genes changed, in the right direction?

DE genes are the top-k genes by |mean change from control| (a ranking, not a test: the metrics
must work on a handful of cells and on pseudobulk-free predictions alike).
"""

from __future__ import annotations

import numpy as np

from ptrag.core.hookspecs import ComponentParams, MetricSpec, hookimpl
from ptrag.core.interfaces import Metric

from .expression import TopKParams, mean_delta, top_de


class DEOverlap(Metric):
    """Fraction of the real top-k DE genes that are also among the predicted top-k."""

    name = "de-overlap"
    direction = "higher"
    space = "de"

    def __init__(self, k: int = 20):
        self.k = k
        self.label = f"de-overlap@{k}"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        real_top = top_de(mean_delta(real, ctrl), self.k)
        pred_top = top_de(mean_delta(pred, ctrl), self.k)
        return len(np.intersect1d(real_top, pred_top)) / len(real_top)


class DEDirection(Metric):
    """Fraction of the real top-k DE genes whose predicted change has the real change's sign.

    A zero predicted change agrees with nothing, so predicting no effect scores 0.
    """

    name = "de-direction"
    direction = "higher"
    space = "de"

    def __init__(self, k: int = 20):
        self.k = k
        self.label = f"de-direction@{k}"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        real_delta = mean_delta(real, ctrl)
        genes = top_de(real_delta, self.k)
        return float(np.mean(np.sign(mean_delta(pred, ctrl)[genes]) == np.sign(real_delta[genes])))


@hookimpl
def ptrag_metrics() -> list[MetricSpec]:
    return [
        MetricSpec("de-overlap", lambda params, ctx: DEOverlap(params.k), TopKParams,
                   "Overlap of predicted and real top-k DE genes by |mean change|"),
        MetricSpec("de-direction", lambda params, ctx: DEDirection(params.k), TopKParams,
                   "Sign agreement of predicted and real change on the real top-k DE genes"),
    ]
