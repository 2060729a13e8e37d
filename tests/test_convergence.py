"""PT-RAG as its authors run it (one seeded Gumbel sample at evaluation, the per-candidate context
from [cell, query, candidate]), training until validation stops improving, the evaluation
keep-ratio and the selection diagnostic."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import ptrag.core.runs.experiment as experiment
from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.hookspecs import BuildContext
from ptrag.core.interfaces import SelectionInput
from ptrag.core.reporting.report import build_report
from ptrag.core.runs.trace import keep_ratio, selection_auc
from ptrag.core.training.stopping import StoppingRule
from ptrag.plugins.selectors.gumbel import GumbelParams, GumbelSelector

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["data.synth_preset=tiny", "compare=[]", "device=cpu", "model.hidden_dim=16", "generator.n_layers=1",
        "data.cell_set_len=16", "train.batch_size=4", "train.val_every=4"]


def config(tmp_path, name, *sets, preset="ptrag"):
    return resolve_config(None, preset=preset, manager=build_manager(entry_points=False),
                          sets=[*TINY, *sets, f"output.dir={tmp_path / name}"])


def test_the_ptrag_preset_repeats_exactly_and_reports_the_keep_decisions_it_applied(tmp_path, monkeypatch):
    applied = []  # (keep decisions [1,S,K], mask [1,K]) of every held-out prediction
    recording = [False]
    forward = GumbelSelector.forward

    def spy(self, inputs):
        out = forward(self, inputs)
        if recording[0]:
            applied.append((out.weights.detach().clone(), inputs.mask.clone()))
        return out

    def predict_recorded(prep):
        recording[0] = True
        try:
            return predict_held_out(prep)
        finally:
            recording[0] = False

    predict_held_out = experiment.predict_held_out
    monkeypatch.setattr(GumbelSelector, "forward", spy)
    monkeypatch.setattr(experiment, "predict_held_out", predict_recorded)
    manager = build_manager(entry_points=False)
    runs = [experiment.run_experiment(config(tmp_path, name, "train.steps=8"), manager) for name in ("a", "b")]
    pd.testing.assert_frame_equal(runs[0].metrics, runs[1].metrics)  # one seeded sample: the same predictions
    pd.testing.assert_frame_equal(runs[0].retrieval, runs[1].retrieval)
    reported = json.loads((runs[0].run_dir / "metrics.json").read_text())["run"]["retrieval"]["keep_ratio"]
    first_run = applied[: len(applied) // 2]
    kept = sum(float((w * m[:, None, :]).sum()) for w, m in first_run)
    pairs = sum(float(m.sum()) * w.shape[1] for w, m in first_run)
    assert reported > 0 and reported == pytest.approx(kept / pairs, abs=1e-6)
    assert keep_ratio(runs[0].retrieval) == pytest.approx(reported)
    summary = json.loads((runs[0].run_dir / "retrieval_summary.json").read_text())
    assert all(0 <= line["keep_ratio"] <= 1 for line in summary.values())


def test_the_context_carries_the_query():
    torch.manual_seed(0)
    h, b, s, k = 8, 1, 3, 4
    states, candidates = torch.randn(b, s, h), torch.randn(b, k, h)
    queries = torch.randn(2, b, h)
    keep = torch.ones(b, s, k)
    for mode, differs in (("triple", True), ("candidate", False)):
        selector = GumbelSelector(GumbelParams(context_from=mode), BuildContext(hidden_dim=h))
        a, c = (selector.context(keep, states, q, candidates) for q in queries)
        assert (not torch.allclose(a, c)) == differs  # same kept candidates, another query


def test_a_sampled_selection_is_the_same_for_the_same_seed_and_never_an_average():
    selector = GumbelSelector(GumbelParams(sample_at_eval=True, context_from="triple"), BuildContext(hidden_dim=8))
    selector.eval()
    inputs = SelectionInput(torch.randn(2, 5, 8), torch.randn(2, 8), torch.randn(2, 6, 8), torch.zeros(2, 6),
                            torch.ones(2, 6, dtype=torch.bool))
    draws = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        draws.append(selector(inputs).weights)
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    assert set(draws[0].unique().tolist()) <= {0.0, 1.0}  # hard decisions, not a mean over samples


def test_the_stopping_rule():
    rule = StoppingRule(patience=2, min_delta=0.01, val_every=50)
    assert rule.update(0, 1.0).improved
    assert not rule.update(50, 0.995).improved  # within 1%: noise, not an improvement
    assert rule.update(100, 0.98).improved and rule.best_step == 100
    assert not rule.update(150, math.nan).improved  # a non-finite value never improves
    decision = rule.update(200, math.inf)
    assert decision.stop and not decision.improved
    assert rule.reason.startswith("patience: validation did not improve by more than 1.00% in 2 validations "
                                  "(100 steps) after step 100")
    never = StoppingRule(patience=0)
    assert not any(never.update(i, 1.0 + i).stop for i in range(10))
    assert never.finished(10, 10) == "cap: reached train.steps=10"
    blind = StoppingRule(patience=3)
    assert blind.update(5, None).improved and "no validation groups" in blind.finished(5, 5)


def test_metrics_json_says_where_and_why_training_stopped(tmp_path):
    manager = build_manager(entry_points=False)
    run = experiment.run_experiment(config(tmp_path, "s", "train.steps=24", "train.patience=1",
                                           "train.min_delta=0.5", preset="state"), manager)
    training = json.loads((run.run_dir / "metrics.json").read_text())["run"]["training"]
    assert training["steps"] == 4 and training["stop_reason"].startswith("patience")  # no 50% gain: stopped
    assert training["budget"] == "converge" and [s for s, _ in training["validation"]] == [0, 4]


def test_validation_draws_the_same_numbers_every_time(tmp_path):
    """A stochastic model's validation curve moves only when the model does."""
    from ptrag.core.runs.prepare import prepare
    from ptrag.core.runs.train import _trainer

    prep = prepare(config(tmp_path, "v", "train.steps=4"), build_manager(entry_points=False), log=lambda m: None)
    trainer = _trainer(prep)
    assert prep.model.stochastic
    first, second = trainer.validate(), trainer.validate()
    assert first == second and np.isfinite(first)


def test_bf16_autocast_runs_on_the_cpu(tmp_path, monkeypatch):
    seen = []
    forward = GumbelSelector.forward
    monkeypatch.setattr(GumbelSelector, "forward",
                        lambda self, inputs: seen.append(torch.is_autocast_enabled("cpu")) or forward(self, inputs))
    manager = build_manager(entry_points=False)
    run = experiment.run_experiment(config(tmp_path, "bf16", "train.steps=4", "train.precision=bf16"), manager)
    assert seen and all(seen)  # training, validation and prediction under bf16 autocast
    assert run.metrics.value.notna().all() and (run.metrics.value.abs() < 1e6).all()


def test_the_selection_auc_tells_a_good_selector_from_a_bad_one():
    def trace(keep, similarity):
        return pd.DataFrame({"pert": "A", "context": "k562", "keep_weight": keep, "response_similarity": similarity})

    similarity = [0.9, 0.7, 0.1, -0.2]
    assert selection_auc(trace([1, 1, 0, 0], similarity)) == 1.0
    assert selection_auc(trace([0, 0, 1, 1], similarity)) == 0.0
    assert selection_auc(trace([1, 0, 0, 1], similarity)) == 0.5  # kept 0.9 and -0.2, dropped 0.7 and 0.1
    assert math.isnan(selection_auc(trace([0, 0, 0, 0], similarity)))  # nothing kept: undefined
    assert math.isnan(selection_auc(trace([np.nan] * 4, similarity)))  # no keep decisions (selector none)


def test_the_report_draws_every_learned_runs_validation_curve_and_selection_auc(tmp_path):
    manager = build_manager(entry_points=False)
    folders = [experiment.run_experiment(config(tmp_path, f"r-s{seed}", "train.steps=8", f"seed={seed}"),
                                         manager).run_dir for seed in (0, 1)]
    made = build_report(folders, tmp_path / "report")
    names = [f.name for f in made["figures"]]
    assert "validation_curves.png" in names and "selection_auc.png" in names
