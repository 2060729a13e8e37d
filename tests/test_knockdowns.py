"""In-silico screens: `ptrag predict --genes ... --line ...` predicts knock-downs never measured in a
line, ranks them by predicted effect with a confidence, and says what it knows of each gene."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import ptrag
from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.data.database import ResponseDatabase
from ptrag.core.data.synth import synth_screen
from ptrag.core.runs.knockdowns import cross_line_evidence, expected_correlation
from ptrag.core.runs.reload import load_run

pytestmark = pytest.mark.usefixtures("one_thread")
UNMEASURED = "CCT7"  # its rpe1 cells are removed from the screen: never measured there


@pytest.fixture(scope="module")
def screen_file(tmp_path_factory):
    adata = synth_screen("tiny", 0)
    adata = adata[~((adata.obs.gene == UNMEASURED) & (adata.obs.cell_line == "rpe1"))].copy()
    path = tmp_path_factory.mktemp("screen") / "screen.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def gol_run(screen_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "gol"
    result = CliRunner().invoke(app, ["run", "--preset", "gene-other-lines", "--data", str(screen_file),
                                      "--set", "data.holdout_context=rpe1", "--set", "compare=[]", "--device", "cpu",
                                      "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_an_unmeasured_knock_down_is_predicted_from_the_evidence_of_other_lines(gol_run, screen_file, tmp_path):
    out = tmp_path / "kd"
    held = sorted(pd.read_csv(gol_run / "metrics.csv").pert.unique())[0]  # a held-out (test) gene of rpe1
    result = CliRunner().invoke(app, ["predict", "--run", str(gol_run), "--genes", f"{UNMEASURED}, {held},EXOSC3",
                                      "--line", "rpe1", "--cells", "40", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)
    effects = pd.read_csv(out / "effects.csv")
    assert list(effects["rank"]) == [1, 2, 3] and effects.effect.is_monotonic_decreasing
    status = dict(zip(effects.gene, effects.status, strict=True))
    assert status[UNMEASURED] == "in silico" and status[held] == "held out"
    assert status["EXOSC3"] == ("held out" if "EXOSC3" in set(pd.read_csv(gol_run / "metrics.csv").pert)
                                else "in training")
    assert (effects.cells == 40).all() and effects.measured_in_other_lines.eq(1).all()
    change = pd.read_csv(out / "mean_change.csv").set_index("gene")
    assert list(change.index) == list(effects.gene)
    # gene-other-lines: the unmeasured gene's predicted change is its observed response in k562
    found = ptrag.predict_knockdowns(gol_run, [UNMEASURED], "rpe1", cells=40)
    db = load_run(gol_run, build_manager(entry_points=False), device="cpu").database
    response = np.asarray(db.response)[db.entries_of(UNMEASURED, "k562")[0]]
    predicted = found.mean_change.loc[UNMEASURED].to_numpy()
    floored = (found.predictions.X[:40] == 0).any(axis=0)  # the floor at 0 changes such a gene's mean
    assert (~floored).sum() > 10
    np.testing.assert_allclose(predicted[~floored], response[~floored], atol=1e-5)


def test_the_default_screen_is_the_runs_own_and_bad_requests_are_one_line(gol_run, tmp_path):
    runner = CliRunner()
    cases = [(["--genes", "CCT7"], "--genes and --line go together"),
             (["--genes", "CCT7", "--line", "hepg2"], "--line hepg2: the run was trained on k562, rpe1"),
             (["--genes", " , ", "--line", "rpe1"], "--genes: no gene given"),
             (["--genes", "CCT7", "--line", "rpe1", "--cells", "0"], "--cells 0: predict at least one cell")]
    for extra, message in cases:
        result = runner.invoke(app, ["predict", "--run", str(gol_run), *extra, "--out", str(tmp_path / "x")])
        assert result.exit_code == 1 and message in " ".join(result.output.split()), (extra, result.output)
        assert "Traceback" not in result.output and not (tmp_path / "x").exists()
    result = runner.invoke(app, ["predict", "--run", str(gol_run), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "--data: give the .h5ad to predict" in result.output


def test_predict_says_how_many_scored_groups_were_in_training(gol_run, screen_file, tmp_path):
    result = CliRunner().invoke(app, ["predict", "--run", str(gol_run), "--data", str(screen_file), "--out",
                                      str(tmp_path / "p")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    body = json.loads((tmp_path / "p" / "metrics.json").read_text())["run"]
    db = load_run(gol_run, build_manager(entry_points=False), device="cpu").database
    assert body["in_training"] == len(db) and 0 < body["in_training"] < body["n_groups"]
    assert f"note: {body['in_training']} of these {body['n_groups']} groups were in the run's training data" in \
        " ".join(result.output.split())


def test_a_stack_predicts_unmeasured_knock_downs_through_its_members(screen_file, tmp_path):
    out = tmp_path / "stack"
    sets = ["data.synth_preset=tiny", "data.cell_set_len=16", "train.batch_size=4", "train.val_every=4",
            "train.steps=8", "data.holdout_context=rpe1", "compare=[]"]
    result = CliRunner().invoke(app, ["run", "--preset", "ptrag-stack", "--data", str(screen_file), "--device", "cpu",
                                      *sum((["--set", s] for s in sets), []), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    found = ptrag.predict_knockdowns(out, [UNMEASURED, "TP53"], "rpe1", cells=16, device="cpu")
    assert set(found.effects.gene) == {UNMEASURED, "TP53"}
    assert dict(zip(found.effects.gene, found.effects.status, strict=True))["TP53"] == "in silico"
    assert np.isfinite(found.mean_change.to_numpy()).all()


def test_the_confidence_comes_from_the_genes_responses_in_the_other_lines():
    rng = np.random.default_rng(0)
    base = rng.normal(size=50)
    response = np.stack([base + rng.normal(0, s, 50) for s in (0.1, 0.1, 3.0, 0.1)]).astype(np.float32)
    db = ResponseDatabase(perts=["A", "A", "A", "B"], contexts=["l1", "l2", "l3", "l1"], n_cells=np.ones(4, int),
                          embeddings=np.zeros((4, 2), np.float32), response=response, control_mean={})
    run = type("Run", (), {"database": db})()
    evidence = cross_line_evidence(run, "A", "l4")
    r64 = response[:3].astype(np.float64)
    r = np.corrcoef(r64)
    assert evidence.lines == 3 and evidence.agreement == pytest.approx((r[0, 1] + r[0, 2] + r[1, 2]) / 3)
    gram = r64 @ r64.T
    assert evidence.shared == pytest.approx((gram[0, 1] + gram[0, 2] + gram[1, 2]) / 3)
    assert evidence.total == pytest.approx(np.trace(gram) / 3)
    alike = cross_line_evidence(run, "A", "l3")  # l3, the odd one, is the query's own line: left out
    assert alike.agreement == pytest.approx(r[0, 1]) and alike.agreement > evidence.agreement
    # alike responses make a confident prediction; noise of the measurement lowers it
    assert expected_correlation(alike, 0.0) > expected_correlation(evidence, 0.0)
    assert expected_correlation(alike, 0.0) > expected_correlation(alike, 50.0) > 0
    assert expected_correlation(alike, 0.0) == pytest.approx(alike.shared / np.sqrt(alike.total * alike.shared))
    lone = cross_line_evidence(run, "B", "l2")
    assert lone.lines == 1 and np.isnan(lone.agreement) and np.isnan(expected_correlation(lone, 1.0))
