"""Expression-space metrics built on the mean change from control (harder to game than levels)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ptrag.core.hookspecs import ComponentParams, MetricSpec, hookimpl, params_factory
from ptrag.core.interfaces import Metric
from ptrag.core.registry import builtin_specs


def mean_delta(cells: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
    return cells.mean(axis=0) - ctrl.mean(axis=0)


def top_de(delta: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` genes with the largest |mean change| (ties broken by gene order)."""
    k = min(k, len(delta))
    return np.argsort(-np.abs(delta), kind="stable")[:k]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of a prediction ``a`` with the real ``b``. A constant real change leaves
    nothing to correlate with: NaN (undefined for that group, reported as such by a run); a
    constant prediction against a real change scores 0 (it predicts none of it)."""
    a, b = a - a.mean(), b - b.mean()
    if not (b * b).sum() > 0:
        return float("nan")
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


class MeanSquaredError(Metric):
    """Mean over genes of the squared difference between predicted and real mean expression."""

    direction = "lower"
    space = "genes"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        return float(np.mean((pred.mean(axis=0) - real.mean(axis=0)) ** 2))


class PearsonDelta(Metric):
    """Pearson correlation of predicted vs real mean change from control, over all genes.

    A constant (zero-change) prediction scores 0; a group whose real change is constant has no
    defined value (NaN).
    """

    direction = "higher"
    space = "genes"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        return pearson(mean_delta(pred, ctrl), mean_delta(real, ctrl))


class TopKParams(ComponentParams):
    k: int = Field(20, ge=1, description="number of top differentially expressed genes (by real |mean change|)")


class PearsonDeltaDE(Metric):
    """Pearson of predicted vs real mean change on the real top-k DE genes only."""

    direction = "higher"
    space = "de"

    def __init__(self, k: int = 20):
        self.k = k
        self.label = f"pearson-delta-de@{k}"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        real_delta = mean_delta(real, ctrl)
        genes = top_de(real_delta, self.k)
        return pearson(mean_delta(pred, ctrl)[genes], real_delta[genes])


make_mse = params_factory(MeanSquaredError)
make_pearson_delta = params_factory(PearsonDelta)
make_pearson_delta_de = params_factory(PearsonDeltaDE, "k")


@hookimpl
def ptrag_metrics() -> list[MetricSpec]:
    return builtin_specs("metric", __name__)
