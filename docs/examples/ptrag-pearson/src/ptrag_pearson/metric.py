"""Score a prediction by the Spearman correlation of its mean change from control with the real one.

Rank correlation asks whether the right genes move most, whatever the size of the change, so it is
a useful companion to ptrag's pearson-delta on screens with a few very large responses.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from ptrag.core.interfaces import Metric


class SpearmanDelta(Metric):
    direction = "higher"  # 1: the same ranking of genes by change
    space = "genes"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        baseline = ctrl.mean(axis=0)
        predicted, observed = pred.mean(axis=0) - baseline, real.mean(axis=0) - baseline
        if np.ptp(predicted) == 0 or np.ptp(observed) == 0:
            return 0.0  # no ranking on one side: no defined correlation
        return float(spearmanr(predicted, observed).statistic)
