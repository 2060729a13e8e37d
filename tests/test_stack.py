"""Stacking: the stack's predictions are its formula applied to its members' saved predictions, group
by group; the members are trained once and reused; the weights are fitted on validation groups
that are never test groups; and the backbone is kept unless the fitted model is better on both
headline metrics."""

from __future__ import annotations

import json
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import ptrag.core.runs.calibrate as calibrate
import ptrag.core.runs.experiment as experiment
from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.config import DataConfig, resolve_config
from ptrag.core.data.loading import load_screen
from ptrag.core.data.synth import synth_screen
from ptrag.core.runs.reload import load_run
from ptrag.plugins.generators.stack import StackGenerator, shift_to_mean

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["data.synth_preset=tiny", "device=cpu", "data.cell_set_len=16", "train.batch_size=4", "train.val_every=4",
        "train.steps=8"]


def stack_config(tmp_path, name, *sets, manager=None):
    return resolve_config(None, preset="ptrag-stack", manager=manager or build_manager(entry_points=False),
                          sets=[*TINY, *sets, f"output.dir={tmp_path / name}"])


def group_cells(path):
    """(perturbation, cell line) -> predicted cells of a run's predictions.h5ad (controls left out)."""
    a = ad.read_h5ad(path)
    keys = list(zip(a.obs["gene"].astype(str), a.obs["cell_line"].astype(str), strict=True))
    rows = pd.Series(range(len(keys)), index=pd.MultiIndex.from_tuples(keys)).groupby(level=[0, 1]).indices
    return {g: np.asarray(a.X[idx], dtype=np.float64) for g, idx in rows.items() if g[0] != "non-targeting"}


def the_stacks_weight(run_dir):
    body = json.loads((run_dir / "metrics.json").read_text())["run"]["training"]
    return body["calibration"]["weights"], body["selection"]["kept"]


@pytest.fixture
def calibrated_stack(tmp_path_factory):
    """A finished stack run whose fitted weight is kept whatever validation says, so the formula
    is tested with a weight that is not 0."""
    out = tmp_path_factory.mktemp("stack") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(calibrate, "_better_on_both", lambda new, start: True)
        experiment.run_experiment(stack_config(out.parent, out.name, "compare=[]"), build_manager(entry_points=False))
    return out


def test_the_stack_equals_its_formula_on_its_members_saved_predictions(calibrated_stack):
    run = calibrated_stack
    weights, kept = the_stacks_weight(run)
    w = weights["state"]
    assert kept == "calibrated" and abs(w) > 0.05  # a formula test with the weight at work
    stack = group_cells(run / "predictions.h5ad")
    backbone = group_cells(run / "compare" / "gene-other-lines" / "predictions.h5ad")
    member = group_cells(run / "compare" / "state" / "predictions.h5ad")
    test_groups = json.loads((run / "metrics.json").read_text())["run"]["n_test_groups"]
    assert len(stack) == test_groups and set(stack) == set(backbone) == set(member)
    floored = 0
    for group, cells in stack.items():
        b, m = backbone[group], member[group]
        formula = b.mean(0) + w * (m.mean(0) - b.mean(0))
        np.testing.assert_allclose(cells.mean(0), np.maximum(formula, 0), atol=1e-5, err_msg=str(group))
        plain = b + (formula - b.mean(0))  # cells: the backbone's, moved by one offset per gene
        free = (plain >= 0).all(0)
        np.testing.assert_allclose(cells[:, free], plain[:, free], atol=1e-5, err_msg=str(group))
        assert (cells >= 0).all()
        floored += int((~free).sum())
    assert floored > 0  # some genes needed the floor: their means are exact too (checked above)


def test_the_fitted_weight_is_the_ridge_on_the_saved_validation_means(calibrated_stack):
    table = pd.read_csv(calibrated_stack / "calibration.csv")
    weights, _ = the_stacks_weight(calibrated_stack)
    shift = (table["state"] - table["gene-other-lines"]).to_numpy()
    residual = (table["real"] - table["gene-other-lines"]).to_numpy()
    n_groups = table.groupby(["pert", "context"]).ngroups
    gram = shift @ shift
    assert n_groups >= 2
    assert weights["state"] == pytest.approx(shift @ residual / (gram * (1 + 4.0 / n_groups)), rel=1e-6)


def test_stacking_weights_never_see_a_test_perturbation(tmp_path, monkeypatch):
    screen = load_screen(DataConfig(synth_preset="tiny"))
    k562 = sorted(p for p, c in screen.groups if c == "k562")
    shared, val_only = k562[0], k562[1]
    split = tmp_path / "split.toml"  # a STATE split may name one perturbation under both val and test
    split.write_text(f'[datasets]\nscreen = "/x"\n[training]\nscreen = "train"\n[zeroshot]\n[fewshot]\n'
                     f'[fewshot."screen.k562"]\nval = ["{shared}", "{val_only}"]\n'
                     f'test = ["{shared}", "{k562[2]}", "{k562[3]}"]\n')
    seen: list[tuple[str, str]] = []  # every group the weights or the selection looked at
    fit = StackGenerator.calibrate_groups

    def spy_fit(self, groups):
        seen.extend((g.pert, g.context) for g in groups)
        return fit(self, groups)

    predict_groups = calibrate.predict_groups

    def spy_predict(prep, groups, positions):
        seen.extend(groups)
        return predict_groups(prep, groups, positions)

    monkeypatch.setattr(StackGenerator, "calibrate_groups", spy_fit)
    monkeypatch.setattr(calibrate, "predict_groups", spy_predict)
    run = experiment.run_experiment(stack_config(tmp_path, "stack", "compare=[]", f"data.split={split}"),
                                    build_manager(entry_points=False))
    assert set(seen) == {(val_only, "k562")}  # the shared perturbation is left out, test groups never enter
    training = json.loads((run.run_dir / "metrics.json").read_text())["run"]["training"]
    assert training["calibration"]["validation_groups"] == 1 and set(training["calibration"]["weights"]) == {"state"}
    assert training["selection"]["groups"] == 1


def _scored(table):
    """Validation scores as a function of the model's one weight (0 = the start)."""
    return lambda prep, manager: table[float(prep.model.weight.detach())]


@pytest.mark.parametrize(("changed", "kept"), [
    ({"energy": 0.20, "pearson-delta": 0.40}, "calibrated"),  # better on both: the fitted model
    ({"energy": 0.20, "pearson-delta": 0.29}, "start"),  # better energy, worse pearson-delta
    ({"energy": 0.31, "pearson-delta": 0.50}, "start"),  # better pearson-delta, worse energy
    ({"energy": 0.30, "pearson-delta": 0.30}, "start"),  # no better: the start
])
def test_selection_keeps_the_start_unless_better_on_both_headline_metrics(monkeypatch, changed, kept):
    model = torch.nn.Linear(1, 1, bias=False)
    start = {"weight": torch.zeros(1, 1)}
    with torch.no_grad():
        model.weight.fill_(1.0)
    monkeypatch.setattr(calibrate, "_validation_scores",
                        _scored({0.0: {"energy": 0.30, "pearson-delta": 0.30}, 1.0: changed}))
    prep = SimpleNamespace(model=model, log=lambda _: None, split=SimpleNamespace(fitting_val=[("A", "k562")]))
    selection = calibrate.protect_start(prep, start, manager=None, changed="calibrated")
    assert selection["kept"] == kept
    assert float(model.weight.detach()) == (1.0 if kept == "calibrated" else 0.0)
    assert selection["validation"]["energy"] == {"calibrated": changed["energy"], "start": 0.30}


def test_members_are_trained_once_and_the_stack_predicts_from_its_folder(tmp_path, monkeypatch):
    calls: list[str] = []
    run = experiment.run_experiment

    def counting(cfg, *args, **kwargs):
        calls.append(cfg.preset)
        return run(cfg, *args, **kwargs)

    monkeypatch.setattr(experiment, "run_experiment", counting)  # the runs of members and comparisons
    out = tmp_path / "stack"
    result = CliRunner().invoke(app, ["run", "--preset", "ptrag-stack", *sum((["--set", s] for s in TINY), []),
                                      "--set", "compare=[state, gene-other-lines]", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(calls) == ["gene-other-lines", "state"]  # the members; the comparisons reused them
    assert result.output.count("finished already") == 2
    body = json.loads((out / "metrics.json").read_text())["run"]
    assert body["members"] == ["gene-other-lines", "state"]
    weights, kept = the_stacks_weight(out)
    said = " ".join(result.output.split())  # the fit and the decision in words, both validation scores
    decision = "so the fitted ptrag-stack was kept" if kept == "calibrated" else "so gene-other-lines was kept"
    assert f"ptrag-stack: weight of state {weights['state']:.3g}, fitted on" in said and decision in said
    report = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "report")], catch_exceptions=False)
    assert report.exit_code == 0 and decision in " ".join(report.output.split())
    assert decision in (tmp_path / "report" / "report.html").read_text()
    loaded = load_run(out, build_manager(entry_points=False), device="cpu")
    expected = [weights["state"]] if kept == "calibrated" else [0.0]
    assert loaded.model.generator.weights.tolist() == pytest.approx(expected)
    path = tmp_path / "new.h5ad"
    synth_screen("tiny", 0).write_h5ad(path)
    result = CliRunner().invoke(app, ["predict", "--run", str(out), "--data", str(path), "--out",
                                      str(tmp_path / "pred"), "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "pred" / "metrics.csv")["value"].notna().any()


@pytest.fixture
def oracle_plugin(monkeypatch, tmp_path, oracle_package):
    """The ptrag-oracle fixture package, knowing the answer for a tiny screen written to a file."""
    data = tmp_path / "screen.h5ad"
    synth_screen("tiny", 0).write_h5ad(data)
    monkeypatch.setenv("PTRAG_ORACLE_DATA", str(data))
    return data


def _run_stack(tmp_path, data, partner, *sets):
    manager = build_manager()
    cfg = stack_config(tmp_path, f"stack-{partner}", "compare=[]", f"data.path={data}",
                       f"generator.partners=[{partner}]", *sets, manager=manager)
    return experiment.run_experiment(cfg, manager)


def test_a_plugin_member_that_knows_the_answer_gets_weight_one_and_beats_the_backbone(tmp_path, oracle_plugin):
    result = _run_stack(tmp_path, oracle_plugin, "oracle", "generator.shrink=0")
    weights, kept = the_stacks_weight(result.run_dir)
    assert weights["oracle"] == pytest.approx(1.0, abs=0.05) and kept == "calibrated"
    stack = pd.read_csv(result.run_dir / "metrics.csv").set_index(["pert", "context", "metric"])["value"]
    gol = pd.read_csv(result.run_dir / "compare" / "gene-other-lines" / "metrics.csv") \
        .set_index(["pert", "context", "metric"])["value"]
    for metric, better in (("energy", np.less), ("pearson-delta", np.greater)):
        assert better(stack.xs(metric, level="metric").mean(), gol.xs(metric, level="metric").mean()), metric
    assert stack.xs("pearson-delta", level="metric").mean() > 0.9  # the real mean change (up to the floor at 0)


def test_a_member_equal_to_the_backbone_leaves_it_unchanged(tmp_path, oracle_plugin):
    result = _run_stack(tmp_path, oracle_plugin, "backbone-twin")
    weights, _ = the_stacks_weight(result.run_dir)
    assert weights["backbone-twin"] == 0.0
    stack = group_cells(result.run_dir / "predictions.h5ad")
    backbone = group_cells(result.run_dir / "compare" / "gene-other-lines" / "predictions.h5ad")
    assert set(stack) == set(backbone)
    for group, cells in stack.items():
        np.testing.assert_array_equal(cells, backbone[group])


def test_shift_to_mean_keeps_the_mean_exact_and_the_cells_non_negative():
    rng = np.random.default_rng(0)
    cells = np.maximum(rng.normal(0.5, 1.0, (40, 30)), 0)  # zero-inflated, like log1p expression
    target = cells.mean(0) + rng.normal(0, 0.6, 30)
    moved = shift_to_mean(cells, target)
    np.testing.assert_allclose(moved.mean(0), np.maximum(target, 0), atol=1e-12)
    assert (moved >= 0).all()
    plain = cells + (target - cells.mean(0))
    free = (plain >= 0).all(0)
    assert free.any() and (~free).any()
    np.testing.assert_array_equal(moved[:, free], plain[:, free])  # no cell crosses 0: the plain shift
    signed = cells - 2.0  # features that may be negative get the plain shift
    np.testing.assert_allclose(shift_to_mean(signed, target - 2.0), signed + (target - 2.0 - signed.mean(0)))
    one = shift_to_mean(cells[:1], target)  # a group of one cell
    np.testing.assert_allclose(one[0], np.maximum(target, 0), atol=1e-12)


def test_a_stack_refuses_its_backbone_as_a_partner(tmp_path):
    result = CliRunner().invoke(app, ["run", "--preset", "ptrag-stack", *sum((["--set", s] for s in TINY), []),
                                      "--set", "generator.partners=[gene-other-lines]", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "backbone 'gene-other-lines' cannot also be a partner" in result.output
    assert "Traceback" not in result.output
