import io
import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ptrag.cli.app import app

runner = CliRunner()
TINY = ["--set", "data.synth_preset=tiny"]
BASELINE = ["--preset", "pert-mean", *TINY]  # no training: the CLI flow, fast


def invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_run_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", *BASELINE, "--out", str(out), "--seed", "3")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["seed"] == 3 and cfg["generator"]["name"] == "pert-mean"
    table = pd.read_csv(out / "metrics.csv")
    assert list(table.columns)[:4] == ["pert", "context", "metric", "value"]
    assert {"mse", "pearson-delta", "w1", "energy"} <= set(table.metric)
    assert table.groupby("metric").size().nunique() == 1 and len(table) >= 2
    summary = json.loads((out / "metrics.json").read_text())["metrics"]
    assert summary["mse"]["direction"] == "lower" and summary["pearson-delta"]["direction"] == "higher"
    lo, hi = summary["mse"]["ci95"]
    assert lo <= summary["mse"]["mean"] <= hi
    assert summary["mse"]["mean"] == pytest.approx(table.loc[table.metric == "mse", "value"].mean())


def test_same_seed_same_metrics(tmp_path):
    for name in ("a", "b"):
        assert invoke("run", *BASELINE, "--out", str(tmp_path / name)).exit_code == 0
    a, b = (pd.read_csv(tmp_path / n / "metrics.csv") for n in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)


def test_pert_mean_beats_control_on_the_builtin_data(tmp_path):
    for preset in ("control", "pert-mean"):
        assert invoke("run", *TINY, "--preset", preset, "--out", str(tmp_path / preset)).exit_code == 0
    mse = {p: json.loads((tmp_path / p / "metrics.json").read_text())["metrics"]["mse"]["mean"]
           for p in ("control", "pert-mean")}
    assert mse["pert-mean"] < mse["control"]


def test_unknown_retriever_is_one_line_without_traceback(tmp_path):
    result = runner.invoke(app, ["run", "--retriever", "nosuch", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines[0].startswith("error: unknown retriever 'nosuch'; available retrievers: ")
    assert "exact" in lines[0] and "faiss" in lines[0] and "hnsw" in lines[0]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_plugins_json_lists_every_builtin(fake_plugins):
    result = invoke("plugins", "--all", "--json")
    assert result.exit_code == 0
    records = json.loads(result.output)
    listed = {(c["kind"], c["name"]) for r in records for c in r["components"]}
    from ptrag.core.components.manager import build_manager
    from ptrag.core.registry import load_registry

    optional_absent = set(build_manager(entry_points=False).absent)  # optional built-ins without their extra
    assert {(e.kind, e.name) for e in load_registry().components} - optional_absent <= listed
    assert ("retriever", "fake-dot") in listed
    broken = [r for r in records if r["package"] == "ptrag-broken-plugin"]
    assert broken and broken[0]["status"] == "failed" and broken[0]["components"] == []


def test_plugins_table_and_filters(fake_plugins):
    result = invoke("plugins")
    assert result.exit_code == 0
    assert "fake" in result.output and "fake-dot" in result.output
    assert "ptrag:generators" not in result.output  # built-ins only with --all
    assert "failed: broken (ptrag-broken-plugin 0.2.0): ModuleNotFoundError" in result.output
    only_metrics = json.loads(invoke("plugins", "--all", "--json", "--kind", "metric").output)
    kinds = {c["kind"] for r in only_metrics for c in r["components"]}
    assert kinds == {"metric"}
    bad = runner.invoke(app, ["plugins", "--kind", "nosuch"])
    assert bad.exit_code == 1 and "kinds: retriever, selector, generator, metric" in bad.output


def test_run_uses_a_third_party_component(fake_plugins, tmp_path):
    # the PT-RAG preset with a third-party retriever: retrieval feeds the Gumbel selector
    result = invoke("run", *TINY, "--retriever", "fake-dot", "--steps", "3", "--set", "compare=[]",
                    "--set", "metrics=[mse, mean-abs]",
                    "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(tmp_path / "r" / "metrics.csv").metric) == {"mse", "mean-abs"}
    assert (tmp_path / "r" / "retriever" / "keys.npy").is_file()


@pytest.mark.parametrize("command", [[], ["run"], ["plugins"]])
def test_help_is_useful(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output.splitlines()) > 8


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "ptrag.cli.app", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("ptrag ")


def test_the_comparison_table_fits_80_columns_and_never_cuts_a_label(tmp_path):
    from rich.console import Console

    from ptrag.cli.tables import comparison_tables
    from ptrag.core.api import run

    result = run(preset="pert-mean", set=["data.synth_preset=tiny"], out=tmp_path / "r", keep_cells=False,
                 compare=["gene-other-lines", "neighbour-mean", "context-mean", "control"])
    console = Console(width=80, record=True, file=io.StringIO())
    for table in comparison_tables(result, width=80):
        console.print(table)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # nothing truncated
    for run_ in [result, *result.comparisons]:
        assert f" {run_.config.preset} " in text  # every preset named whole, in a row of its own
    for metric in result.summary:
        assert f" {metric} " in text  # every metric named whole
