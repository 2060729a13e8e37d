"""Budgets, losses in PC space, the non-negative output floor and the retrieval verdict."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import energy_distance as scipy_energy

from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.errors import ConfigError
from ptrag.core.evaluation.verdict import retrieval_verdicts
from ptrag.core.runs.experiment import run_experiment
from ptrag.core.runs.results import RunResult
from ptrag.core.training.losses import fit_pc_space, per_axis_energy, set_loss


@pytest.fixture(scope="module")
def manager():
    return build_manager(entry_points=False)


def test_a_budget_sets_the_training_keys_and_explicit_keys_still_win(manager, tmp_path):
    paper = resolve_config(None, preset="state", budget="paper", manager=manager)
    t = paper.train
    assert paper.budget == "paper" and (t.steps, t.batch_size, t.optimizer, t.schedule, t.grad_clip, t.lr) == \
        (50000, 64, "adam", "constant", 10.0, 0.001) and paper.data.cell_set_len == 64
    assert resolve_config(None, preset="state", manager=manager).budget == "converge"  # the preset's own
    mine = resolve_config(None, preset="state", budget="paper", sets=["train.steps=10"], manager=manager)
    assert mine.train.steps == 10 and mine.train.optimizer == "adam"
    exp = tmp_path / "exp.yaml"
    exp.write_text("preset: state\nbudget: paper\ntrain: {batch_size: 4}\n")
    from_yaml = resolve_config(exp, manager=manager)
    assert from_yaml.budget == "paper" and from_yaml.train.batch_size == 4 and from_yaml.train.steps == 50000
    with pytest.raises(ConfigError, match="unknown budget 'gpu'; available budgets: converge, demo, paper"):
        resolve_config(None, preset="state", budget="gpu", manager=manager)


def test_per_axis_energy_is_the_evaluation_energy_per_principal_component():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1, 30, 5)), rng.normal(0.5, 1.3, size=(1, 40, 5))
    ours = per_axis_energy(torch.tensor(x), torch.tensor(y), eps=0.0).item()
    assert ours == pytest.approx(np.mean([scipy_energy(x[0, :, j], y[0, :, j]) for j in range(5)]), rel=1e-5)


def test_pc_energy_loss_projects_each_set_on_its_cell_lines_axes():
    rng = np.random.default_rng(1)
    blocks = [rng.normal(size=(200, 6)) * [3, 0, 0, 0, 0, 0], rng.normal(size=(200, 6)) * [0, 0, 0, 0, 0, 3]]
    space = fit_pc_space(blocks, n_pcs=1)
    assert space.axes.shape == (2, 6, 1)
    # the first axis of line 0 is gene 0, of line 1 gene 5: a shift of gene 0 only shows in line 0
    x = torch.zeros(2, 20, 6)
    y = x.clone()
    y[:, :, 0] += 1.0
    lines = torch.tensor([0, 1])
    moved = per_axis_energy(space.project(x, lines), space.project(y, lines))
    assert moved[0] > 1.0 and moved[1] == pytest.approx(0.01)  # sqrt(eps): no distance
    assert set_loss("pc-energy", x, y, space, lines) > 0
    with pytest.raises(ConfigError):
        set_loss("pc-energy", x, y)  # a PC loss needs the axes


def test_predictions_are_never_negative_so_nothing_is_clipped(manager, tmp_path):
    sets = ["data.synth_preset=tiny", "model.hidden_dim=16", "generator.n_layers=1", "generator.n_heads=2",
            "data.cell_set_len=8", "train.batch_size=2", "train.steps=4", "train.val_every=2", "compare=[]",
            "device=cpu"]
    floored = run_experiment(resolve_config(None, preset="state", sets=[*sets, f"output.dir={tmp_path / 'a'}"],
                                            manager=manager), manager)
    raw = run_experiment(resolve_config(None, preset="state", manager=manager,
                                        sets=[*sets, f"output.dir={tmp_path / 'b'}", "model.nonnegative=false"]),
                         manager)
    assert json.loads((floored.run_dir / "metrics.json").read_text())["run"]["outputs"]["clipped_values"] == 0
    assert json.loads((raw.run_dir / "metrics.json").read_text())["run"]["outputs"]["clipped_values"] > 0


def _result(preset, values, trained, retriever="exact", selector="gumbel"):
    config = resolve_config(None, preset="ptrag", sets=[f"retriever.name={retriever}", f"selector.name={selector}"])
    config = config.model_copy(update={"preset": preset})
    rows = [{"pert": f"g{i}", "context": "k562", "metric": m, "value": v[i]}
            for m, v in values.items() for i in range(len(v))]
    long = pd.DataFrame(rows)
    summary = {m: {"mean": float(np.mean(v)), "direction": "lower" if m == "energy" else "higher"}
               for m, v in values.items()}
    return RunResult(run_dir=None, config=config, metrics=long, summary=summary,
                     training={"steps": 1} if trained else None, uses_retrieval="none" not in (retriever, selector))


def test_the_verdict_needs_a_better_mean_and_a_significant_paired_test_on_each_metric():
    rng = np.random.default_rng(0)
    base = {"energy": rng.uniform(0.3, 0.4, 40), "pearson-delta": rng.uniform(0.3, 0.6, 40)}
    weak = {"energy": base["energy"] + 0.05, "pearson-delta": base["pearson-delta"] - 0.1}
    good = {"energy": base["energy"] - rng.uniform(0.01, 0.02, 40), "pearson-delta": base["pearson-delta"] + 0.05}
    mixed = {"energy": base["energy"] - 0.01, "pearson-delta": base["pearson-delta"] + rng.normal(0, 0.05, 40)}
    runs = [_result("good", good, True), _result("mixed", mixed, True), _result("gol", base, False),
            _result("weak", weak, False), _result("state", good, True, retriever="none", selector="none")]
    verdicts = {v.run: v for v in retrieval_verdicts(runs)}
    assert set(verdicts) == {"good", "mixed"}  # trained retrieval runs only
    assert verdicts["good"].beat and set(verdicts["good"].tests.baseline) == {"gol"}  # the best baseline
    assert not verdicts["mixed"].beat
    outcomes = dict(zip(verdicts["mixed"].tests.metric, verdicts["mixed"].tests.outcome, strict=False))
    assert outcomes["energy"] == "better" and "not significant" in outcomes["pearson-delta"]
    assert "good beat the best baseline" in verdicts["good"].text
    assert "mixed did not beat" in verdicts["mixed"].text


def test_identical_scores_are_called_identical_not_tested_on_rounding_noise():
    rng = np.random.default_rng(1)
    base = {"energy": rng.uniform(0.3, 0.4, 30), "pearson-delta": rng.uniform(0.3, 0.6, 30)}
    noisy = {m: v * (1 + rng.uniform(-1e-9, 1e-9, v.shape)) for m, v in base.items()}  # summation-order noise
    shifted = {"energy": base["energy"], "pearson-delta": base["pearson-delta"] + 1e-4}  # a real, tiny change
    runs = [_result("same", noisy, True), _result("shifted", shifted, True), _result("gol", base, False)]
    verdicts = {v.run: v for v in retrieval_verdicts(runs)}
    same = verdicts["same"].tests.set_index("metric")
    assert same.identical.all() and (same.wilcoxon_p == 1.0).all()
    assert "(identical within 1e-06 on every perturbation)" in verdicts["same"].text and not verdicts["same"].beat
    shifted = verdicts["shifted"].tests.set_index("metric")
    assert shifted.loc["energy", "identical"] and not shifted.loc["pearson-delta", "identical"]
    assert shifted.loc["pearson-delta", "outcome"] == "better"
