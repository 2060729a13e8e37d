"""Training that diverges: it stops at the first non-finite value, finishes from finite weights of
a validation after the start (or a start declared a baseline) and says so, or fails in one line
leaving nothing; no run ever writes a non-finite prediction."""

import json
import math

import anndata as ad
import numpy as np
import pytest
from typer.testing import CliRunner

import ptrag.core.training.trainer as trainer_module
from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.errors import TrainingError
from ptrag.core.runs.experiment import run_experiment
from ptrag.core.training.checkpoints import load_checkpoint
from ptrag.core.training.interrupt import crash_after
from ptrag.core.training.stopping import StoppingRule
from ptrag.core.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["data.synth_preset=tiny", "model.hidden_dim=16", "generator.n_layers=1", "generator.n_heads=2",
         "data.cell_set_len=8", "train.batch_size=2", "train.warmup_steps=1", "compare=[]", "retriever.k=4",
         "device=cpu"]
HUGE = ["--steps", "6", "--set", "train.val_every=2", "--set", "train.lr=1e6"]


def manager():
    return build_manager(entry_points=False)


def config(out, *sets, preset="state"):
    return resolve_config(None, preset=preset, sets=[*SMALL, f"output.dir={out}", *sets], manager=manager())


def cli(*args):
    sets = [a for s in SMALL if not s.startswith("device") for a in ("--set", s)]
    return CliRunner().invoke(app, ["run", *args[:2], *sets, "--device", "cpu", *args[2:]])


def scripted_validation(monkeypatch, values):
    """Validation values by step (the real ones are what the model makes of tiny data)."""
    monkeypatch.setattr(Trainer, "validate", lambda self: values[self.step])


def nan_loss_from(monkeypatch, call):
    """The training loss is NaN from its ``call``-th computation on (1-based)."""
    real, calls = trainer_module.set_loss, []

    def set_loss(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * math.nan if len(calls) >= call else loss

    monkeypatch.setattr(trainer_module, "set_loss", set_loss)


def test_a_nan_is_never_an_improvement():
    rule = StoppingRule(patience=0)
    assert rule.update(0, 5.0).improved
    assert not rule.update(2, math.nan).improved and not rule.update(4, math.inf).improved
    assert (rule.best, rule.best_step) == (5.0, 0)


def test_a_nan_validation_never_becomes_best(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, {0: 5.0, 2: 4.0, 4: math.nan, 6: 1.0})
    result = run_experiment(config(tmp_path / "r", "train.steps=8", "train.val_every=2"), manager())
    training = result.training
    assert (training["best_step"], training["best_val_energy"], training["diverged_at_step"]) == (2, 4.0, 4)
    assert training["steps"] == 4 and "predictions use the weights of step 2" in training["stop_reason"]
    ck = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert ck["step"] == 2  # no checkpoint of the weights that gave the NaN
    recorded = json.loads((tmp_path / "r" / "metrics.json").read_text())["run"]["training"]
    assert recorded["diverged_at_step"] == 4 and recorded["stop_reason"] == training["stop_reason"]


def test_a_nan_training_loss_stops_training_naming_its_first_step(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, {0: 5.0, 2: 4.0, 4: 3.0})
    nan_loss_from(monkeypatch, 3)  # step 3; seen at step 4, the next validation (log_every=10)
    lines = []
    result = run_experiment(config(tmp_path / "r", "train.steps=8", "train.val_every=2"), manager(),
                            log=lines.append)
    assert result.training["diverged_at_step"] == 3 and result.training["steps"] == 4
    said = [line for line in lines if "diverged" in line]  # once, with the weights the run goes on with
    assert said == ["training stopped at step 4: diverged at step 3 (non-finite training loss); predictions use the "
                    "weights of step 2 (the best validation before it)"]
    assert [step for step, _ in result.training["validation"]] == [0, 2]  # the NaN weights were never validated


def test_a_divergence_before_any_improvement_fails_and_leaves_nothing(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, {0: 5.0, 2: 6.0})
    nan_loss_from(monkeypatch, 3)
    with pytest.raises(TrainingError, match=r"r: training diverged at step 3 \(non-finite training loss\) before any "
                                            r"validation improved on the untrained start.*lower train.lr"):
        run_experiment(config(tmp_path / "r", "train.steps=8", "train.val_every=2"), manager())
    assert not (tmp_path / "r").exists()


def test_a_huge_learning_rate_without_clipping_exits_in_one_line_and_leaves_nothing(tmp_path):
    result = cli("--preset", "state", *HUGE, "--set", "train.grad_clip=0", "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: ") and "training diverged at step 2 (non-finite training loss)" in line
    assert "lower train.lr (now 1e+06) or set train.grad_clip" in line and str(tmp_path / "r") in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args", [
    ["--preset", "state", *HUGE, "--set", "train.grad_clip=0"],
    ["--preset", "state", *HUGE, "--set", "train.precision=bf16"],
    ["--preset", "ptrag", *HUGE, "--set", "train.grad_clip=0"],
    ["--preset", "vanilla-rag", *HUGE, "--set", "train.grad_clip=0"],
    ["--preset", "ptrag-evidence", *HUGE, "--set", "train.grad_clip=0"],
], ids=["state", "state-bf16", "ptrag", "vanilla-rag", "ptrag-evidence"])
def test_ptrag_run_never_exits_0_with_non_finite_predictions(tmp_path, args):
    result = cli(*args, "--out", str(tmp_path / "r"))
    assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
    if result.exit_code:
        assert not (tmp_path / "r").exists()
        return
    assert "diverged at step" in result.output
    assert np.isfinite(ad.read_h5ad(tmp_path / "r" / "predictions.h5ad").X).all()


def test_a_start_declared_a_baseline_survives_a_divergence(tmp_path):
    result = cli("--preset", "ptrag-evidence", *HUGE, "--set", "train.grad_clip=0", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    training = json.loads((tmp_path / "r" / "metrics.json").read_text())["run"]["training"]
    assert training["diverged_at_step"] in (2, 4, 6) and training["best_step"] == 0  # within the 6 steps
    assert "predictions use the untrained start (step 0)" in training["stop_reason"]
    assert "selection" not in training  # nothing trained to choose from: the model holds its start


def test_non_finite_predictions_are_never_written(tmp_path, monkeypatch):
    from ptrag.core.model.compose import PtragModel

    forward = PtragModel.forward

    def nan_when_predicting(self, batch):  # finite in training and validation, NaN on held-out cells
        pred, selection = forward(self, batch)
        return (pred * math.nan if batch.target is None else pred), selection

    monkeypatch.setattr(PtragModel, "forward", nan_when_predicting)
    with pytest.raises(TrainingError, match="predicted non-finite values .* no predictions were written"):
        run_experiment(config(tmp_path / "r", "train.steps=2", "train.val_every=2"), manager())
    assert not (tmp_path / "r").exists()


def test_a_resumed_run_that_diverges_keeps_its_checkpoint(tmp_path, monkeypatch):
    cfg = config(tmp_path / "r", "train.steps=8", "train.val_every=2")
    scripted_validation(monkeypatch, {0: 5.0, 2: 6.0})
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, manager())
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    assert "checkpoint.pt" in before
    nan_loss_from(monkeypatch, 2)  # the resumed run's second step: step 4
    with pytest.raises(TrainingError, match="training diverged at step 4"):
        run_experiment(cfg, manager(), resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before


def test_ptrag_predict_never_writes_non_finite_predictions(tmp_path, monkeypatch):
    import ptrag
    from ptrag.core.data.synth import synth_screen
    from ptrag.core.errors import PtragError
    from ptrag.core.model.compose import PtragModel

    run = run_experiment(config(tmp_path / "r", "train.steps=2", "train.val_every=2"), manager())
    forward = PtragModel.forward

    def nan(self, batch):
        pred, selection = forward(self, batch)
        return pred * math.nan, selection

    monkeypatch.setattr(PtragModel, "forward", nan)
    with pytest.raises(PtragError, match="predicted non-finite values .* nothing was written"):
        ptrag.predict(run.run_dir, synth_screen("tiny", 0), out=tmp_path / "p")
    assert not (tmp_path / "p").exists()
