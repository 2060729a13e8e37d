"""The optional cell-eval metrics plugin: values are cell-eval's own, one evaluation per cell line,
and without the extra the plugin is absent and says how to get it.

The tests that need cell-eval skip when it is not installed; CI installs the `celleval` extra and
checks that `ptrag plugins` lists these metrics, so there they always run.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.errors import DataError, PtragError

runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore:the string cache:DeprecationWarning")  # polars, inside cell-eval


def needs_cell_eval() -> None:
    pytest.importorskip("cell_eval", reason='the celleval extra is not installed: pip install "ptrag[celleval]"')
PLUGIN = "ptrag.plugins.metrics.celleval"
OURS = ["pearson-delta", "mse", "de-overlap", "de-direction", "discrimination"]
THEIRS = ["celleval:pearson_delta", "celleval:mse", "celleval:overlap_at_N", "celleval:de_direction_match",
          "celleval:discrimination_score_l1", "celleval:precision_at_N", "celleval:mae",
          "celleval:de_spearman_lfc_sig", "celleval:de_sig_genes_recall"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One `ptrag run` on the tiny data with ptrag's and cell-eval's metrics, counting evaluations."""
    needs_cell_eval()
    from ptrag.plugins.metrics import celleval

    out = tmp_path_factory.mktemp("celleval") / "run"
    calls = []
    original = celleval.evaluate_line
    celleval._CACHE.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(celleval, "evaluate_line", lambda *a, **k: calls.append(k.get("context")) or original(*a, **k))
        result = runner.invoke(app, ["run", "--preset", "pert-mean", "--set", "data.synth_preset=tiny",
                                     "--set", f"metrics=[{', '.join(OURS + THEIRS)}]",
                                     "--set", "compare=[]", "--out", str(out)],
                               env={"COLUMNS": "160"}, catch_exceptions=False)  # wide: full metric names
    assert result.exit_code == 0, result.output
    return out, result.output, calls


def test_run_reports_cell_eval_metrics_next_to_ptrags(run):
    out, output, _ = run
    table = pd.read_csv(out / "metrics.csv")
    labels = {"de-overlap@20", "de-direction@20", "pearson-delta", "mse", "discrimination", *THEIRS}
    assert set(table.metric) == labels
    summary = json.loads((out / "metrics.json").read_text())["metrics"]
    assert set(summary) == labels
    assert summary["celleval:mse"]["direction"] == "lower"
    assert summary["celleval:pearson_delta"]["direction"] == "higher"
    for label in THEIRS:
        assert label in output  # the run table printed at the end
        assert summary[label]["n"] > 0
    # same mean expression, clipping apart: the two MSEs agree closely, the two Pearsons only roughly
    assert summary["celleval:mse"]["mean"] == pytest.approx(summary["mse"]["mean"], rel=0.05)


def test_one_cell_eval_evaluation_per_cell_line(run):
    out, _, calls = run
    lines = pd.read_csv(out / "metrics.csv").context.unique()
    assert sorted(calls) == sorted(lines)  # nine cell-eval metrics, one DE computation per line


def test_values_equal_cell_evals_own_evaluator_on_the_run_files(run, tmp_path):
    import anndata as ad
    from cell_eval import MetricsEvaluator

    out, _, _ = run
    table = pd.read_csv(out / "metrics.csv")
    pred, real = ad.read_h5ad(out / "predictions.h5ad"), ad.read_h5ad(out / "real.h5ad")
    for line in table.context.unique():
        results, _ = MetricsEvaluator(pred[pred.obs.cell_line == line].copy(), real[real.obs.cell_line == line].copy(),
                                      control_pert="non-targeting", pert_col="gene", num_threads=1,
                                      outdir=str(tmp_path / line)).compute(
            profile="full", skip_metrics=["clustering_agreement", "pearson_edistance"], write_csv=False)
        theirs = results.to_pandas().set_index("perturbation")
        ours = table[table.context == line].pivot(index="pert", columns="metric", values="value")
        assert sorted(ours.index) == sorted(theirs.index)
        for label in THEIRS:
            expected = theirs.loc[ours.index, label.removeprefix("celleval:")].to_numpy(dtype=float)
            np.testing.assert_allclose(ours[label].to_numpy(dtype=float), expected, rtol=1e-5, atol=1e-6,
                                       equal_nan=True, err_msg=f"{label} on {line}")


def test_directions_are_cell_evals_best_values():
    needs_cell_eval()
    from cell_eval._types import MetricBestValue
    from cell_eval.metrics import metrics_registry

    from ptrag.plugins.metrics.celleval import OFFERED

    best = {"higher": MetricBestValue.ONE, "lower": MetricBestValue.ZERO}
    for name, offered in OFFERED.items():
        assert metrics_registry.get_metric(name).best_value == best[offered.direction], name


def test_top_n_is_a_validated_parameter():
    needs_cell_eval()
    from ptrag.core.config import component_params, resolve_config
    from ptrag.core.errors import ConfigError
    from ptrag.core.hookspecs import BuildContext

    manager = build_manager(entry_points=False)
    config = resolve_config(preset="pert-mean", manager=manager,
                            sets=["metrics=[{name: celleval:overlap_at_N, n: 50}, celleval:precision_at_N]"])
    built = [manager.get("metric", c.name).build(component_params(c, "metric", manager), BuildContext())
             for c in config.metrics]
    assert [m.label for m in built] == ["celleval:overlap_at_50", "celleval:precision_at_N"]
    with pytest.raises(ConfigError, match=r"metrics\[0\] \(celleval:overlap_at_N\): n: "):
        resolve_config(preset="pert-mean", manager=manager, sets=["metrics=[{name: celleval:overlap_at_N, n: 20}]"])
    with pytest.raises(ConfigError, match="celleval:mse"):  # only overlap and precision take N
        resolve_config(preset="pert-mean", manager=manager, sets=["metrics=[{name: celleval:mse, n: 50}]"])


def test_real_values_outside_cell_evals_range_are_one_clear_error():
    needs_cell_eval()
    from ptrag.plugins.metrics.celleval import evaluate_line

    rng = np.random.default_rng(0)

    def cells(n, scale=1.0):
        return rng.gamma(2.0, 0.5, (n, 4)).astype(np.float32) * scale

    with pytest.raises(DataError, match=r"real cells of cell line 'k562' have values in .*\[0, 15\)"):
        evaluate_line([cells(5)], [cells(5, 20.0)], cells(8), ["A"], ["g1", "g2", "g3", "g4"], context="k562")
    with pytest.raises(DataError, match="real cells of cell line 'k562' have integer values"):
        evaluate_line([cells(5)], [np.round(cells(5))], np.round(cells(8)), ["A"], list("abcd"), context="k562")
    with pytest.raises(DataError, match="3 gene names for 4 expression features"):
        evaluate_line([cells(5)], [cells(5)], cells(8), ["A"], ["g1", "g2", "g3"], context="k562")


@pytest.fixture
def without_cell_eval(monkeypatch):
    """As if the extra were not installed: `import cell_eval` fails, the plugin is imported afresh."""
    monkeypatch.setitem(sys.modules, "cell_eval", None)
    if PLUGIN in sys.modules:
        monkeypatch.delitem(sys.modules, PLUGIN)
    yield


def test_without_the_extra_the_plugin_is_absent_with_a_hint(without_cell_eval, monkeypatch):
    monkeypatch.setenv("PTRAG_STRICT_PLUGINS", "1")  # absent is not a plugin problem
    manager = build_manager(entry_points=False)
    record = next(r for r in manager.records if r.name == "ptrag:metrics.celleval")
    assert record.status == "absent" and record.components == []
    assert 'pip install "ptrag[celleval]"' in record.error and "cell_eval" in record.error
    assert not [n for n in manager.names("metric") if n.startswith("celleval:")]
    assert "pearson-delta" in manager.names("metric")  # the rest keep working
    assert ("metric", "celleval:pearson_delta") in manager.absent
    with pytest.raises(PtragError) as info:
        manager.get("metric", "celleval:mse")
    assert str(info.value).startswith("metric 'celleval:mse' is optional, not installed")
    assert 'pip install "ptrag[celleval]"' in str(info.value)


def test_ptrag_plugins_says_how_to_get_it(without_cell_eval, tmp_path):
    table = runner.invoke(app, ["plugins"], catch_exceptions=False)
    assert table.exit_code == 0
    assert 'absent: ptrag:metrics.celleval' in table.output
    assert 'pip install "ptrag[celleval]"' in " ".join(table.output.split())
    listed = json.loads(runner.invoke(app, ["plugins", "--json"], catch_exceptions=False).output)
    absent = [r for r in listed if r["plugin"] == "ptrag:metrics.celleval"]
    assert absent and absent[0]["status"] == "absent" and absent[0]["components"] == []
    assert 'pip install "ptrag[celleval]"' in absent[0]["error"]
    result = runner.invoke(app, ["run", "--preset", "pert-mean", "--set", "data.synth_preset=tiny",
                                 "--set", "metrics=[mse, celleval:mse]", "--out", str(tmp_path / "r")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output
    assert 'celleval:mse' in lines[0] and 'pip install "ptrag[celleval]"' in lines[0]
    assert not (tmp_path / "r").exists()
