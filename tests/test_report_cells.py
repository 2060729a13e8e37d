"""What `ptrag run` writes as its report, from its cells: every comparison, per-perturbation
figures, the predicted-vs-real DE genes (the run's own DE scores, gene by gene) and the
candidates retrieved per query."""

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.evaluation.de_table import de_table
from ptrag.core.reporting.report import build_report

BASE = ["--set", "data.synth_preset=tiny", "--set", "data.cell_set_len=8", "--set", "train.batch_size=2",
        "--set", "train.warmup_steps=1", "--device", "cpu", "--steps", "4", "--set", "train.val_every=2",
        "--set", "model.hidden_dim=16", "--set", "generator.n_layers=1", "--set", "generator.n_heads=2"]
COMPARED = ["gene-other-lines", "neighbour-mean"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cells") / "20260101-120000-state-s0"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["run", "--preset", "state", *BASE, "--set",
                                          f"compare=[{', '.join(COMPARED)}]", "--out", str(out)],
                                    catch_exceptions=False)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_ptrag_run_writes_its_report_with_every_comparison(run):
    out, output = run
    lines = output.strip().splitlines()
    assert lines[-1] == str(out)
    bottom = [i for i, line in enumerate(lines) if line.startswith("Best on this split")]
    assert len(bottom) == 1 and bottom[0] == len(lines) - 2  # last before the folder (no retrieval verdicts here)
    assert f"report: {out / 'report' / 'report.html'}" in output
    summary = pd.read_csv(out / "report" / "summary.csv")
    assert list(dict.fromkeys(summary.run)) == ["state", *COMPARED]  # named by preset, comparisons included
    page = (out / "report" / "report.html").read_text()
    assert "Bottom line." in page and "predicted vs real DE genes" in page
    for name in ("state", *COMPARED):
        assert (out / "report" / f"perturbations_{name}.png").stat().st_size > 0
    assert (out / "report" / "candidates_neighbour-mean.png").is_file()  # it retrieves
    assert not (out / "report" / "candidates_state.png").exists()  # it does not


def test_the_de_table_agrees_with_the_runs_de_scores(run):
    out, _ = run
    de = pd.read_csv(out / "report" / "de_genes.csv")
    for name, folder in (("state", out), *((c, out / "compare" / c) for c in COMPARED)):
        metrics = pd.read_csv(folder / "metrics.csv")
        for metric, column in (("de-overlap@20", "overlap"), ("de-direction@20", "direction")):
            joined = metrics[metrics.metric == metric].merge(de[de.run == name], on=["pert", "context"])
            assert len(joined) == metrics[["pert", "context"]].drop_duplicates().shape[0]
            np.testing.assert_allclose(joined[column], joined["value"])
    first = de.iloc[0]
    found = set(first.found.split(";"))
    real = {g[:-1] for g in first.real_de_genes.split(";")}
    predicted = {g[:-1] for g in first.predicted_de_genes.split(";")}
    assert found == real & predicted and first.overlap == pytest.approx(len(found) / 20)


def test_genes_choose_the_perturbations_shown(run, tmp_path):
    out, _ = run
    de = pd.read_csv(out / "report" / "de_genes.csv")
    pert = de[de.run == "state"].sort_values("real_change_size").pert.iloc[0]  # the weakest: never a default
    result = build_report([out], tmp_path / "rep", genes=[pert])
    shown = result["de"][result["de"]["shown"]]
    assert set(shown.pert) == {pert} and set(shown.run) == {"state", *COMPARED}
    with pytest.raises(Exception, match="NOT-A-GENE in .*: neither a read-out gene .* nor a held-out perturbation"):
        build_report([out], tmp_path / "rep2", genes=["NOT-A-GENE"])


def test_de_table_by_hand():
    genes = ["A", "B", "C", "D"]
    real = np.array([[2.0, -1.0, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]])
    pred = np.array([[-0.5, -2.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    table = de_table([("X", "k562"), ("Y", "k562")], genes, pred, real, k=2)
    x, y = table.iloc[0], table.iloc[1]
    assert x.real_de_genes == "A+;B-" and x.predicted_de_genes == "B-;D+" and x.found == "B"
    assert x.overlap == 0.5 and x.direction == 0.5  # B down as real, A predicted down: wrong way
    assert np.isnan(y.overlap) and np.isnan(y.direction)  # no real change: no DE genes
