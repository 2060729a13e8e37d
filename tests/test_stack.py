"""Stacking: the members are trained once and reused, the weights are fitted on validation groups
that are never test groups, and the backbone is kept unless the fitted model is better on both
headline metrics."""

from __future__ import annotations

import json
from types import SimpleNamespace

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
from ptrag.plugins.generators.stack import StackGenerator

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["data.synth_preset=tiny", "device=cpu", "data.cell_set_len=16", "train.batch_size=4", "train.val_every=4",
        "train.steps=8"]


def stack_config(tmp_path, name, *sets):
    return resolve_config(None, preset="ptrag-stack", manager=build_manager(entry_points=False),
                          sets=[*TINY, *sets, f"output.dir={tmp_path / name}"])


def test_stacking_weights_never_see_a_test_perturbation(tmp_path, monkeypatch):
    screen = load_screen(DataConfig(synth_preset="tiny"))
    k562 = sorted(p for p, c in screen.groups if c == "k562")
    shared, val_only = k562[0], k562[1]
    split = tmp_path / "split.toml"  # a STATE split may name one perturbation under both val and test
    split.write_text(f'[datasets]\nscreen = "/x"\n[training]\nscreen = "train"\n[zeroshot]\n[fewshot]\n'
                     f'[fewshot."screen.k562"]\nval = ["{shared}", "{val_only}"]\n'
                     f'test = ["{shared}", "{k562[2]}", "{k562[3]}"]\n')
    seen: list[tuple[str, str]] = []  # every group the weights or the selection looked at
    fit = StackGenerator.calibrate

    def spy_fit(self, batches):
        seen.extend((p, c) for b in batches for p, c in zip(b.perts, b.contexts, strict=True))
        return fit(self, batches)

    predict = calibrate.predict

    def spy_predict(model, sampler, groups, *args, **kwargs):
        seen.extend(groups)
        return predict(model, sampler, groups, *args, **kwargs)

    monkeypatch.setattr(StackGenerator, "calibrate", spy_fit)
    monkeypatch.setattr(calibrate, "predict", spy_predict)
    run = experiment.run_experiment(stack_config(tmp_path, "stack", "compare=[]", f"data.split={split}"),
                                    build_manager(entry_points=False))
    assert set(seen) == {(val_only, "k562")}  # the shared perturbation is left out, test groups never enter
    training = json.loads((run.run_dir / "metrics.json").read_text())["run"]["training"]
    assert training["calibration"]["validation_sets"] >= 1 and set(training["calibration"]["weights"]) == {"state"}
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
    weights = body["training"]["calibration"]["weights"]
    kept = body["training"]["selection"]["kept"]
    loaded = load_run(out, build_manager(entry_points=False), device="cpu")
    expected = [weights["state"]] if kept == "calibrated" else [0.0]
    assert loaded.model.generator.weights.tolist() == pytest.approx(expected)
    path = tmp_path / "new.h5ad"
    synth_screen("tiny", 0).write_h5ad(path)
    result = CliRunner().invoke(app, ["predict", "--run", str(out), "--data", str(path), "--out",
                                      str(tmp_path / "pred"), "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "pred" / "metrics.csv")["value"].notna().any()


def test_a_stack_refuses_its_backbone_as_a_partner(tmp_path):
    result = CliRunner().invoke(app, ["run", "--preset", "ptrag-stack", *sum((["--set", s] for s in TINY), []),
                                      "--set", "generator.partners=[gene-other-lines]", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "backbone 'gene-other-lines' cannot also be a partner" in result.output
    assert "Traceback" not in result.output
