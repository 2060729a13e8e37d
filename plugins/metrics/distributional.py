"""Distributional metrics: do the predicted cells have the real cells' distribution?

Following the paper's evaluation, each is a 1-D distance computed per principal component and
averaged over the PCs (the evaluator hands these metrics cells projected on up to 50 PCs fitted on
the real cells of the cell line). ``w2-ot`` is the multivariate exception: exact optimal transport
between the two point clouds in PC space. See docs/metrics.md for the exact definitions.
"""

from __future__ import annotations

import numpy as np
import ot
from pydantic import Field
from scipy.stats import energy_distance

from ptrag.core.hookspecs import ComponentParams, MetricSpec, hookimpl, params_factory
from ptrag.core.interfaces import Metric
from ptrag.core.registry import builtin_specs


def _subsample(x: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= cap else x[np.sort(rng.choice(len(x), cap, replace=False))]


class Wasserstein1(Metric):
    """Mean over PCs of the 1-D Wasserstein-1 distance (POT ``wasserstein_1d``, p=1)."""

    direction = "lower"
    space = "pca50"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        return float(np.mean(ot.wasserstein_1d(pred.astype(np.float64), real.astype(np.float64), p=1)))


class Wasserstein2(Metric):
    """Mean over PCs of the squared 1-D Wasserstein-2 distance (POT ``wasserstein_1d``, p=2)."""

    direction = "lower"
    space = "pca50"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        return float(np.mean(ot.wasserstein_1d(pred.astype(np.float64), real.astype(np.float64), p=2)))


class Energy(Metric):
    """Mean over PCs of the 1-D energy distance (``scipy.stats.energy_distance``).

    scipy returns sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|), i.e. the square root of Székely's energy
    distance: two point masses d apart score sqrt(2d).
    """

    direction = "lower"
    space = "pca50"

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        return float(np.mean([energy_distance(pred[:, j], real[:, j]) for j in range(pred.shape[1])]))


class MMDParams(ComponentParams):
    max_cells: int = Field(1000, ge=2, description="cells per side above which a seeded subsample is used")
    seed: int = 0


class RBFMMD(Metric):
    """Mean over PCs of the unbiased squared MMD with an RBF kernel, median-heuristic bandwidth.

    Per PC, sigma is the median pairwise distance of the pooled predicted + real values and
    k(x, y) = exp(-(x - y)^2 / (2 sigma^2)). Unbiased: diagonal terms are left out, so two
    samples of one distribution score about 0 (slightly negative values are possible).
    """

    direction = "lower"
    space = "pca50"

    def __init__(self, max_cells: int = 1000, seed: int = 0):
        self.max_cells, self.seed = max_cells, seed

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        rng = np.random.default_rng(self.seed)
        x = _subsample(pred.astype(np.float64), self.max_cells, rng)
        y = _subsample(real.astype(np.float64), self.max_cells, rng)
        n, m = len(x), len(y)
        if n < 2 or m < 2:
            return float("nan")
        values = []
        for j in range(x.shape[1]):
            a, b = x[:, j], y[:, j]
            pooled = np.concatenate([a, b])
            d = np.abs(pooled[:, None] - pooled[None, :])
            sigma = float(np.median(d[np.triu_indices(len(pooled), k=1)]))
            if sigma <= 0:  # all values equal on this PC (or more than half the pairs tie)
                sigma = float(d.max()) or 1.0
            k = np.exp(-(d**2) / (2 * sigma**2))
            kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
            values.append((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
                          + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                          - 2 * kxy.mean())
        return float(np.mean(values))


class W2OTParams(ComponentParams):
    max_cells: int = Field(500, ge=1, description="cells per side above which a seeded subsample is used")
    seed: int = 0


class W2OT(Metric):
    """Squared multivariate Wasserstein-2 distance in PC space by exact OT (POT ``emd2``).

    Cost is the squared Euclidean distance, weights uniform; sets larger than ``max_cells`` are
    subsampled with ``seed`` (exact OT is cubic in the number of cells).
    """

    direction = "lower"
    space = "pca50"

    def __init__(self, max_cells: int = 500, seed: int = 0):
        self.max_cells, self.seed = max_cells, seed

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        rng = np.random.default_rng(self.seed)
        x = _subsample(pred.astype(np.float64), self.max_cells, rng)
        y = _subsample(real.astype(np.float64), self.max_cells, rng)
        cost = ot.dist(x, y, metric="sqeuclidean")
        return float(ot.emd2(ot.unif(len(x)), ot.unif(len(y)), cost, numItermax=1_000_000))


make_w1 = params_factory(Wasserstein1)
make_w2 = params_factory(Wasserstein2)
make_energy = params_factory(Energy)
make_mmd = params_factory(RBFMMD, "max_cells", "seed")
make_w2_ot = params_factory(W2OT, "max_cells", "seed")


@hookimpl
def ptrag_metrics() -> list[MetricSpec]:
    return builtin_specs("metric", __name__)
