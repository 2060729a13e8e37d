"""The bottom line claims no difference the paired tests do not support: identical results are
called identical, untested differences ties, and retrieval helps only as the verdicts say."""

import numpy as np
import pandas as pd

from ptrag.core.evaluation.bottom_line import Scored, best_on, bottom_line
from ptrag.core.evaluation.verdict import retrieval_verdicts

DIRS = {"energy": "lower", "pearson-delta": "higher"}


def scored(label, energy, pearson, trained=False, retrieval=False):
    rows = [{"pert": f"G{i}", "context": "k562", "metric": m, "value": v}
            for i, (e, p) in enumerate(zip(energy, pearson, strict=True))
            for m, v in (("energy", e), ("pearson-delta", p))]
    return Scored(label, pd.DataFrame(rows), dict(DIRS), training={"steps": 10} if trained else None,
                  uses_retrieval=retrieval)


RNG = np.random.default_rng(0)
BASE_E, BASE_P = RNG.uniform(0.2, 0.4, 40), RNG.uniform(0.2, 0.6, 40)


def test_identical_results_are_identical_not_better():
    baseline = scored("gene-other-lines", BASE_E, BASE_P)
    stack = scored("ptrag-stack", BASE_E * (1 + 1e-9), BASE_P * (1 - 1e-9), trained=True, retrieval=True)  # rounding
    worse = scored("pert-mean", BASE_E + 0.05, BASE_P - 0.1)
    runs = [stack, baseline, worse]
    said = bottom_line(runs, retrieval_verdicts(runs))
    assert "ptrag-stack = gene-other-lines (identical results) on energy" in said or \
        "gene-other-lines = ptrag-stack (identical results) on energy" in said
    assert "not significantly" not in said  # pert-mean is clearly worse: nothing else is tied
    assert "retrieval did not help" in said and "ptrag-stack scores identically to gene-other-lines" in said


def test_a_difference_the_test_cannot_see_is_no_win():
    baseline = scored("gene-other-lines", BASE_E, BASE_P)
    model = scored("ptrag-evidence", BASE_E - RNG.normal(0.001, 0.02, 40), BASE_P, trained=True, retrieval=True)
    best = best_on([model, baseline], "energy")
    assert len(best.best) == 1 and [name for name, _ in best.tied] == [
        ({"ptrag-evidence", "gene-other-lines"} - set(best.best)).pop()]
    assert "not significantly better than" in bottom_line([model, baseline], retrieval_verdicts([model, baseline]))


def test_retrieval_helped_only_when_a_verdict_says_so():
    baseline = scored("gene-other-lines", BASE_E, BASE_P)
    model = scored("ptrag-evidence", BASE_E - 0.05, BASE_P + 0.1, trained=True, retrieval=True)
    said = bottom_line([model, baseline], retrieval_verdicts([model, baseline]))
    assert said.startswith("Best on this split (paired Wilcoxon over 40 held-out perturbations, p < 0.01): "
                           "ptrag-evidence on energy; ptrag-evidence on pearson-delta")
    assert said.endswith("retrieval helped: ptrag-evidence beat the best baseline on energy and pearson-delta.")


def test_nothing_to_compare_has_no_bottom_line():
    assert bottom_line([scored("state", BASE_E, BASE_P, trained=True)], []) is None


def test_rounding_noise_on_a_correlation_near_zero_is_no_difference():
    from ptrag.core.evaluation.paired import paired_tests

    near_zero = np.r_[RNG.uniform(0.3, 0.6, 39), 0.01]
    a = scored("ptrag-evidence", BASE_E, near_zero, trained=True, retrieval=True)
    b = scored("gene-other-lines", BASE_E, near_zero + np.r_[np.zeros(39), -2e-8])  # float32 noise, as measured
    test = paired_tests(a.metrics, b.metrics, DIRS).set_index("metric")
    assert test.loc["pearson-delta", "identical"]
    real = scored("gene-other-lines", BASE_E, near_zero + np.r_[np.zeros(39), 1e-3])  # a real change stays one
    assert not paired_tests(a.metrics, real.metrics, DIRS).set_index("metric").loc["pearson-delta", "identical"]
