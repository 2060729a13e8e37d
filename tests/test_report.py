"""`ptrag report`: table with best highlighted, paired tests, figures, HTML."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.config import DataConfig
from ptrag.core.data.loading import load_screen
from ptrag.core.errors import ConfigError
from ptrag.core.evaluation.scoring import GroupPrediction
from ptrag.core.reporting.folders import expand_runs, paired_comparison
from ptrag.core.reporting.report import build_report
from ptrag.core.runs.cells import write_cell_eval_files

PERTS = [f"G{i}" for i in range(6)]


def _run(folder, mse, pearson, retrieval=False):
    folder.mkdir(parents=True)
    rows = [{"pert": p, "context": "c1", "metric": m, "value": v}
            for p, a, b in zip(PERTS, mse, pearson, strict=False) for m, v in (("mse", a), ("pearson-delta", b))]
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    summary = {m: {"mean": float(np.mean(v)), "median": float(np.median(v)), "ci95": [min(v), max(v)],
                   "n": len(v), "direction": d, "space": "genes"}
               for m, v, d in (("mse", mse, "lower"), ("pearson-delta", pearson, "higher"))}
    (folder / "metrics.json").write_text(json.dumps({"run": {}, "metrics": summary}))
    if retrieval:
        pd.DataFrame([{"pert": p, "context": "c1", "rank": r, "candidate_pert": f"N{r}", "candidate_context": "c2",
                       "stage1_score": 1 - r / 10, "keep_weight": float(r % 2)} for p in PERTS for r in range(4)]
                     ).to_csv(folder / "retrieval.csv", index=False)
    return folder


@pytest.fixture
def runs(tmp_path):
    a = _run(tmp_path / "a-s0", [1, 2, 3, 4, 5, 6], [0.5] * 6, retrieval=True)
    b = _run(tmp_path / "b-s0", [2, 3, 4, 5, 6, 7], [0.6] * 6)
    return a, b


def test_paired_comparison_is_direction_aware(runs):
    a, b = runs
    table = paired_comparison(a, b).set_index("metric")
    assert table.loc["mse", "mean_diff"] == pytest.approx(-1)
    assert table.loc["mse", "win_rate_a"] == 1.0  # lower mse wins
    assert table.loc["mse", "wilcoxon_p"] == pytest.approx(2 / 2**6)  # exact: all 6 differences one sign
    assert table.loc["pearson-delta", "win_rate_a"] == 0.0  # higher pearson wins: b
    assert table.loc["mse", "n"] == 6


def test_identical_runs_tie(runs):
    a, _ = runs
    table = paired_comparison(a, a).set_index("metric")
    assert table.loc["mse", "win_rate_a"] == 0.5 and table.loc["mse", "wilcoxon_p"] == 1.0


def test_report_cli_prints_table_and_writes_figures(runs, tmp_path):
    a, b = runs
    out = tmp_path / "rep"
    result = CliRunner().invoke(app, ["report", str(a), str(b), "--compare", f"{a} {b}", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "↓ lower" in result.output and "Wilcoxon" in result.output
    assert result.output.strip().splitlines()[-1] == str(out / "report.html")
    for name in ("metric_bars.png", "paired_scatter.png", "retrieval_a.png", "summary.csv", "paired.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    page = (out / "report.html").read_text()
    assert "metric_bars.png" in page and "class=best" in page
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.run) == {"a", "b"}


def test_seeds_aggregate_and_best_is_direction_aware(tmp_path):
    _run(tmp_path / "x-s0", [1] * 6, [0.1] * 6)
    _run(tmp_path / "x-s1", [3] * 6, [0.3] * 6)
    _run(tmp_path / "y-s0", [5] * 6, [0.9] * 6)
    result = build_report([tmp_path], tmp_path / "rep")
    t = result["table"].set_index(["run", "metric"])
    assert t.loc[("x", "mse"), "mean"] == 2 and t.loc[("x", "mse"), "sd"] == pytest.approx(np.sqrt(2))
    assert t.loc[("x", "mse"), "seeds"] == 2
    from ptrag.core.reporting.tables import best_runs

    assert best_runs(result["table"]) == {"mse": "x", "pearson-delta": "y"}


def test_mean_change_scatter_from_the_h5ad_files(tmp_path):
    data = load_screen(DataConfig(synth_preset="tiny"))
    rows = data.obs.groupby(["pert", "context"], observed=True).indices
    folder = _run(tmp_path / "r-s0", [1] * 6, [0.5] * 6)
    preds = []
    for pert, context in [g for g in data.groups if g[1] == "rpe1"][:4]:
        real = data.X[rows[(pert, context)]]
        preds.append(GroupPrediction(pert, context, real + 0.1, real, data.X[data.control_indices(context)]))
    write_cell_eval_files(folder, preds, data)
    result = build_report([folder], tmp_path / "rep", genes=[data.features[0], data.features[1]])
    assert any(f.name == "mean_change_r.png" for f in result["figures"])
    with pytest.raises(Exception, match="--genes: NOPE in .*: neither a read-out gene"):
        build_report([folder], tmp_path / "rep2", genes=["NOPE"])


def test_not_a_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a run folder"):
        expand_runs([tmp_path / "missing"])
    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "not a run folder" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- a run and its comparisons


def _tree(root, main="20260101-120000-ptrag-s0", seed=0, shift=0.0):
    """A run folder named by a timestamp (as ptrag run names it) with two comparisons in compare/."""
    top = _run(root / main, [1 + shift, 2, 3, 4, 5, 6], [0.5] * 6)
    (top / "config.yaml").write_text(f"preset: ptrag\nseed: {seed}\ncompare: [state, gene-other-lines]\n")
    for name, mse in (("gene-other-lines", [2, 3, 4, 5, 6, 7]), ("state", [3, 4, 5, 6, 7, 8])):
        folder = _run(top / "compare" / name, mse, [0.4] * 6)
        (folder / "config.yaml").write_text(f"preset: {name}\nseed: {seed}\n")
    return top


def test_a_run_folder_reports_its_comparisons_named_by_preset(tmp_path):
    top = _tree(tmp_path)
    result = build_report([top], tmp_path / "rep")
    assert list(dict.fromkeys(result["table"].run)) == ["ptrag", "state", "gene-other-lines"]  # config order
    assert not any("2026" in run for run in result["table"].run)  # not the folder's timestamp
    assert pd.read_csv(tmp_path / "rep" / "summary.csv").run.nunique() == 3


def test_against_pairs_a_single_run_with_its_comparisons(tmp_path):
    top = _tree(tmp_path)
    result = CliRunner().invoke(app, ["report", str(top), "--against", "gene-other-lines", "--out",
                                      str(tmp_path / "rep")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(tmp_path / "rep" / "against_summary.csv")
    assert set(summary.run) == {"ptrag", "state"}  # the main run included: one setting
    assert (summary.settings == 1).all()
    mse = summary.set_index(["run", "metric"])
    assert mse.loc[("ptrag", "mse"), "mean_improvement"] > 0 > mse.loc[("state", "mse"), "mean_improvement"]


def test_two_run_trees_of_one_seed_are_two_settings_not_two_seeds(tmp_path):
    a = _tree(tmp_path, "20260101-120000-ptrag-s0")
    b = _tree(tmp_path, "20260102-120000-ptrag-s0", shift=0.5)
    result = build_report([a, b], tmp_path / "rep", against="gene-other-lines")
    assert (result["table"].seeds == 1).all()  # nothing averaged across trees as if seeds
    assert set(result["against"]["settings"].setting) == {a.name, b.name}


def test_seeds_of_run_trees_aggregate_under_the_preset(tmp_path):
    a = _tree(tmp_path, "20260101-120000-ptrag-s0", seed=0)
    b = _tree(tmp_path, "20260102-120000-ptrag-s1", seed=1, shift=1.0)
    result = build_report([tmp_path], tmp_path / "rep", against="gene-other-lines")
    table = result["table"].set_index(["run", "metric"])
    assert table.loc[("ptrag", "mse"), "seeds"] == 2
    assert table.loc[("ptrag", "mse"), "mean"] == pytest.approx((3.5 + 22 / 6) / 2)  # the two seeds' means
    assert set(result["against"]["settings"].seed) == {0, 1} and {a, b} <= set(result["folders"])


def test_the_bottom_line_comes_first_and_names_the_best(tmp_path):
    top = _tree(tmp_path)
    result = CliRunner().invoke(app, ["report", str(top), "--out", str(tmp_path / "rep")], catch_exceptions=False)
    first = result.output.splitlines()[0]
    # six perturbations: the smallest two-sided signed-rank p is 2/64 > 0.01, so nothing is significant
    assert first.startswith("Best on this split") and "not significantly better than" in first
    assert "Bottom line." in (tmp_path / "rep" / "report.html").read_text()
