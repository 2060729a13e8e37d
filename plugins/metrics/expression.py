"""Expression-space metrics built on the mean change from control (harder to game than levels)."""

from __future__ import annotations

import numpy as np

from ptrag.core.hookspecs import BuildContext, ComponentParams, MetricSpec, hookimpl
from ptrag.core.interfaces import Metric


def mean_delta(cells: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
    return cells.mean(axis=0) - ctrl.mean(axis=0)


class MeanSquaredError(Metric):
    """Mean over genes of the squared difference between predicted and real mean expression."""

    name = "mse"
    direction = "lower"
    space = "genes"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        return float(np.mean((pred.mean(axis=0) - real.mean(axis=0)) ** 2))


class PearsonDelta(Metric):
    """Pearson correlation of predicted vs real mean change from control, over all genes.

    A constant (zero-change) prediction has no defined correlation and scores 0.
    """

    name = "pearson-delta"
    direction = "higher"
    space = "genes"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        a, b = mean_delta(pred, ctrl), mean_delta(real, ctrl)
        a, b = a - a.mean(), b - b.mean()
        denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
        return float((a * b).sum() / denom) if denom > 0 else 0.0


@hookimpl
def ptrag_metrics() -> list[MetricSpec]:
    return [
        MetricSpec("mse", lambda params, ctx: MeanSquaredError(), ComponentParams,
                   "MSE of predicted vs real mean expression (genes)"),
        MetricSpec("pearson-delta", lambda params, ctx: PearsonDelta(), ComponentParams,
                   "Pearson of predicted vs real mean change from control (genes)"),
    ]
