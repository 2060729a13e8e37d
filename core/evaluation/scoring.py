"""Score every held-out group with every metric in the metric's space.

Spaces: ``genes`` (expression as given), ``de`` (expression; the metric picks the real top-k DE
genes itself) and ``pca50`` (cells projected on the first min(50, n_features, n_cells) principal
components fitted per cell line on that line's real evaluated cells, control cells included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..components.guards import calling, check_metric_value, check_set_values, who
from ..components.readonly import frozen
from ..data.pca import N_PCS, PCA, fit_pca
from ..interfaces import LineCells, Metric, SetMetric


@dataclass
class GroupPrediction:
    pert: str
    context: str
    pred: np.ndarray  # [n,G]
    real: np.ndarray  # [n,G]
    ctrl: np.ndarray  # [c,G] all control cells of the context
    ctrl_index: np.ndarray | None = None  # [n] rows of the matched control cells in the data, if known


def metric_label(name: str, metric: Metric) -> str:
    """The name a metric's values carry in tables: its ``label`` (e.g. de-overlap@20) or its name."""
    return str(getattr(metric, "label", None) or name)


def context_pcas(predictions: Sequence[GroupPrediction], n_pcs: int = N_PCS) -> dict[str, PCA]:
    """One PCA per cell line, fitted on the line's real evaluated cells plus its control cells."""
    by_context: dict[str, list[GroupPrediction]] = {}
    for p in predictions:
        by_context.setdefault(p.context, []).append(p)
    return {c: fit_pca([*(p.real for p in ps), ps[0].ctrl], n_pcs) for c, ps in by_context.items()}


class _Spaces:
    """Each group's (pred, real, ctrl) in a metric's space, projected once per group."""

    def __init__(self, predictions: Sequence[GroupPrediction], metrics: dict[str, Metric], n_pcs: int):
        need_pca = any(m.space == "pca50" for m in metrics.values())
        self.predictions = predictions
        self.pcas = context_pcas(predictions, n_pcs) if need_pca and predictions else {}
        self._projected: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._ctrl: dict[str, np.ndarray] = {}

    def of(self, i: int, space: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read-only views (a metric that writes into one fails, and changes no other metric's
        input nor the written cells)."""
        p = self.predictions[i]
        if space != "pca50":
            return frozen(p.pred), frozen(p.real), frozen(p.ctrl)
        if i not in self._projected:
            pca = self.pcas[p.context]
            if p.context not in self._ctrl:
                self._ctrl[p.context] = frozen(pca.transform(p.ctrl))
            self._projected[i] = (frozen(pca.transform(p.pred)), frozen(pca.transform(p.real)), self._ctrl[p.context])
        return self._projected[i]


def _set_values(name: str, metric: SetMetric, spaces: _Spaces) -> dict[tuple[str, int], float]:
    """A set metric over each cell line's groups at once."""
    out: dict[tuple[str, int], float] = {}
    predictions = spaces.predictions
    for context in dict.fromkeys(p.context for p in predictions):
        members = [i for i, p in enumerate(predictions) if p.context == context]
        mapped = [spaces.of(i, metric.space) for i in members]
        line = LineCells([m[0] for m in mapped], [m[1] for m in mapped], mapped[0][2],
                         [(predictions[i].pert, context) for i in members])
        with calling(metric, f"compute_set on cell line {context}"):
            values = metric.compute_set(line)
        values = check_set_values(values, len(members), who(metric), f"cell line {context}")
        out.update({(name, i): float(v) for i, v in zip(members, values, strict=True)})
    return out


def _value(metric: Metric, cells: tuple[np.ndarray, np.ndarray, np.ndarray], group: str) -> float:
    with calling(metric, f"compute on {group}"):
        value = metric.compute(*cells)
    return check_metric_value(value, who(metric), group)


def score(predictions: list[GroupPrediction], metrics: dict[str, Metric], *, n_pcs: int = N_PCS) -> pd.DataFrame:
    """Long table: one row per perturbation x context x metric (metric = its label)."""
    spaces = _Spaces(predictions, metrics, n_pcs)
    set_values: dict[tuple[str, int], float] = {}
    for name, metric in metrics.items():
        if isinstance(metric, SetMetric):
            set_values.update(_set_values(name, metric, spaces))
    rows = []
    for i, p in enumerate(predictions):
        for name, metric in metrics.items():
            if isinstance(metric, SetMetric):
                value = set_values[(name, i)]
            else:
                value = _value(metric, spaces.of(i, metric.space), f"{p.pert} in {p.context}")
            rows.append({"pert": p.pert, "context": p.context, "metric": metric_label(name, metric), "value": value})
    return pd.DataFrame(rows, columns=["pert", "context", "metric", "value"])
