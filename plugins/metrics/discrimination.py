"""Discrimination: can the true perturbation be picked out from the prediction?

For each held-out perturbation i of a cell line, the predicted pseudobulk is compared with the
real pseudobulks of all N held-out perturbations of that line. The score is the fraction of the
other N-1 real pseudobulks that are farther from the prediction than the true one (ties count
half): 1 = the true perturbation is the nearest, 0 = the farthest. A constant prediction ranks the
N real pseudobulks in one fixed order, so its scores average exactly 0.5 over the line.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ptrag.core.hookspecs import ComponentParams, MetricSpec, hookimpl, params_factory
from ptrag.core.interfaces import LineCells, SetMetric
from ptrag.core.registry import builtin_specs


class DiscriminationParams(ComponentParams):
    distance: Literal["l1", "l2"] = "l1"


class Discrimination(SetMetric):
    """Normalised rank of the true perturbation among the line's held-out ones (pseudobulks)."""

    direction = "higher"
    space = "genes"

    def __init__(self, distance: str = "l1"):
        self.distance = distance

    def compute_set(self, line: LineCells) -> np.ndarray:
        n = len(line.preds)
        if n < 2:
            return np.full(n, np.nan)
        p = np.stack([x.mean(axis=0) for x in line.preds]).astype(np.float64)
        r = np.stack([x.mean(axis=0) for x in line.reals]).astype(np.float64)
        diff = p[:, None, :] - r[None, :, :]
        dist = np.abs(diff).sum(-1) if self.distance == "l1" else np.sqrt((diff**2).sum(-1))
        true = np.diag(dist)[:, None]
        others = ~np.eye(n, dtype=bool)
        farther = ((dist > true) & others).sum(1) + 0.5 * ((dist == true) & others).sum(1)
        return farther / (n - 1)


make_discrimination = params_factory(Discrimination, "distance")


@hookimpl
def ptrag_metrics() -> list[MetricSpec]:
    return builtin_specs("metric", __name__)
