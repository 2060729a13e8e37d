"""Known-value tests for every built-in metric, and the evaluator's spaces."""

import numpy as np
import pytest

from ptrag.core.components.manager import build_manager
from ptrag.core.data.pca import fit_pca
from ptrag.core.evaluation.aggregate import aggregate
from ptrag.core.evaluation.scoring import GroupPrediction, score
from ptrag.core.interfaces import LineCells
from ptrag.plugins.metrics.de import DEDirection, DEOverlap
from ptrag.plugins.metrics.discrimination import Discrimination
from ptrag.plugins.metrics.distributional import RBFMMD, W2OT, Energy, Wasserstein1, Wasserstein2
from ptrag.plugins.metrics.expression import MeanSquaredError, PearsonDelta, PearsonDeltaDE

rng = np.random.default_rng(0)
CELLS = rng.normal(size=(60, 5))
CTRL = rng.normal(size=(80, 5))


@pytest.mark.parametrize("metric", [Wasserstein1(), Wasserstein2(), Energy(), W2OT()])
def test_identical_sets_have_zero_distance(metric):
    assert metric.compute(CELLS, CELLS.copy(), CTRL) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("d", [0.5, 2.0])
def test_shifted_sets_have_known_distances(d):
    shifted = CELLS + d
    assert Wasserstein1().compute(shifted, CELLS, CTRL) == pytest.approx(d)
    assert Wasserstein2().compute(shifted, CELLS, CTRL) == pytest.approx(d**2)
    # exact multivariate OT: a common shift by d in each of 5 dims costs |shift|^2 = 5 d^2
    assert W2OT().compute(shifted, CELLS, CTRL) == pytest.approx(5 * d**2)
    # energy on point masses d apart: sqrt(2 E|X-Y| - 0 - 0) = sqrt(2d)
    a, b = np.zeros((4, 3)), np.full((6, 3), d)
    assert Energy().compute(a, b, CTRL) == pytest.approx(np.sqrt(2 * d))


def test_w1_only_on_some_pcs_is_averaged():
    shifted = CELLS.copy()
    shifted[:, 0] += 1.0  # one of 5 features shifted by 1 -> mean over features 1/5
    assert Wasserstein1().compute(shifted, CELLS, CTRL) == pytest.approx(0.2)


def test_mmd_known_values():
    d = 3.0
    a, b = np.zeros((2, 1)), np.full((2, 1), d)
    # median pairwise distance of {0,0,d,d} is d; k(0,d) = exp(-1/2); unbiased within-terms are 1
    assert RBFMMD().compute(a, b, CTRL) == pytest.approx(2 - 2 * np.exp(-0.5))
    same = RBFMMD().compute(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)), CTRL)
    far = RBFMMD().compute(rng.normal(size=(300, 2)) + 2, rng.normal(size=(300, 2)), CTRL)
    assert abs(same) < 0.02 and far > 0.3


def test_w2_ot_subsamples_above_its_cap():
    big = rng.normal(size=(50, 2))
    assert W2OT(max_cells=10).compute(big + 1, big, CTRL) > 0
    assert W2OT(max_cells=10).compute(big, big, CTRL) == W2OT(max_cells=10).compute(big, big, CTRL)


ZERO_CTRL = np.zeros((4, 5))  # control mean exactly 0, so cells' means are their changes


def _delta_cells(delta, n=10):
    return np.tile(np.asarray(delta, dtype=float), (n, 1))


def test_expression_metrics_known_values():
    delta = np.array([3.0, -2.0, 1.0, 0.0, 0.5])
    real = _delta_cells(delta)
    assert MeanSquaredError().compute(real, real, ZERO_CTRL) == 0
    assert MeanSquaredError().compute(real + 2, real, ZERO_CTRL) == pytest.approx(4)
    assert PearsonDelta().compute(real, real, ZERO_CTRL) == pytest.approx(1)
    assert PearsonDelta().compute(_delta_cells(-delta), real, ZERO_CTRL) == pytest.approx(-1)
    assert PearsonDelta().compute(_delta_cells(np.zeros(5)), real, ZERO_CTRL) == 0  # no change: no correlation
    # top-2 DE genes are 0 and 1; the prediction gets them right but ruins gene 2
    pred = _delta_cells(np.array([3.0, -2.0, -9.0, 0.0, 0.5]))
    assert PearsonDelta().compute(pred, real, ZERO_CTRL) < 0.9
    assert PearsonDeltaDE(k=2).compute(pred, real, ZERO_CTRL) == pytest.approx(1)
    assert PearsonDeltaDE(k=2).label == "pearson-delta-de@2"


def test_de_metrics_known_values():
    delta = np.array([3.0, -2.0, 1.0, 0.0, 0.5])
    real = _delta_cells(delta)
    assert DEOverlap(k=2).compute(real, real, ZERO_CTRL) == 1
    assert DEOverlap(k=2).label == "de-overlap@2"
    # predicted top-2 = genes {0, 4}: overlap 1 of 2
    assert DEOverlap(k=2).compute(_delta_cells(np.array([3.0, 0, 0, 0, 2.0])), real, ZERO_CTRL) == 0.5
    assert DEDirection(k=3).compute(real, real, ZERO_CTRL) == 1
    one_of_three = _delta_cells(np.array([1.0, 1.0, -1.0, 0, 0]))
    assert DEDirection(k=3).compute(one_of_three, real, ZERO_CTRL) == pytest.approx(1 / 3)
    assert DEDirection(k=3).compute(_delta_cells(np.zeros(5)), real, ZERO_CTRL) == 0


def line(preds, reals):
    """One cell line's groups as a set metric receives them."""
    return LineCells(preds, reals, ZERO_CTRL, [(f"g{i}", "k562") for i in range(len(preds))])


def test_discrimination_perfect_and_constant():
    reals = [_delta_cells(rng.normal(size=5) * 3) for _ in range(7)]
    metric = Discrimination()
    np.testing.assert_allclose(metric.compute_set(line(reals, reals)), 1.0)
    constant = [_delta_cells(np.zeros(5))] * 7
    assert metric.compute_set(line(constant, reals)).mean() == pytest.approx(0.5)
    # the true one the farthest -> 0
    wrong = [reals[1], reals[0]]
    far = [reals[0] + 0, reals[1] + 0]
    assert list(metric.compute_set(line(wrong, far))) == [0.0, 0.0]
    assert np.isnan(metric.compute_set(line(reals[:1], reals[:1]))).all()


def test_every_registered_metric_is_built_and_declares_direction_and_space():
    manager = build_manager(entry_points=False)
    for name in manager.names("metric"):
        spec = manager.get("metric", name)
        metric = spec.build(spec.params_model(), None)
        assert metric.direction in ("lower", "higher") and metric.space in ("genes", "pca50", "de")


def test_pca_is_capped_and_fitted_per_cell_line():
    pca = fit_pca([rng.normal(size=(8, 70))])
    assert pca.components.shape == (70, 8)  # min(50, features, cells)
    pca = fit_pca([rng.normal(size=(200, 12))])
    assert pca.components.shape == (12, 12)
    np.testing.assert_allclose(pca.components.T @ pca.components, np.eye(12), atol=1e-8)


def _groups(shift_pred):
    ctrl = rng.normal(size=(40, 6))
    out = []
    for i, context in enumerate(["a", "a", "a", "b", "b"]):
        real = ctrl[:20] + np.eye(6)[i % 6] * 3
        out.append(GroupPrediction(f"g{i}", context, real + shift_pred, real, ctrl))
    return out


def test_score_maps_spaces_and_aggregates():
    manager = build_manager(entry_points=False)
    metrics = {n: manager.get("metric", n).build(manager.get("metric", n).params_model(), None)
               for n in ("w1", "mse", "de-overlap", "discrimination")}
    table = score(_groups(0.0), metrics)
    assert set(table.metric) == {"w1", "mse", "de-overlap@20", "discrimination"}
    assert len(table) == 5 * 4
    values = table.pivot_table(index=["pert", "context"], columns="metric", values="value")
    assert (values["w1"].abs() < 1e-9).all() and (values["mse"] == 0).all()
    assert (values["discrimination"] == 1).all() and (values["de-overlap@20"] == 1).all()
    shifted = score(_groups(1.0), metrics)
    assert shifted.loc[shifted.metric == "mse", "value"].to_numpy() == pytest.approx(1.0)
    summary = aggregate(table, metrics)
    assert summary["de-overlap@20"]["direction"] == "higher" and summary["w1"]["space"] == "pca50"
    assert summary["mse"]["n"] == 5


def test_set_metrics_that_ask_get_the_groups_names():
    from ptrag.core.interfaces import SetMetric

    class Named(SetMetric):
        name = "named"

        def compute_set(self, line):
            seen.append(line.groups)
            return np.arange(len(line.preds), dtype=float)

    seen = []

    def cells():
        return rng.normal(size=(4, 3))

    groups = [GroupPrediction(p, c, cells(), cells(), cells()) for p, c in
              [("A", "k562"), ("B", "rpe1"), ("C", "k562")]]
    table = score(groups, {"named": Named(), "discrimination": Discrimination()})
    assert seen == [[("A", "k562"), ("C", "k562")], [("B", "rpe1")]]
    assert table[table.metric == "named"].value.tolist() == [0.0, 0.0, 1.0]
