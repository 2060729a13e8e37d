"""docs/own-data.md works as written: its commands, in order, on a generated raw-count screen shaped
like a user's (counts in X, the line in obs['cell_type']), from `data inspect` to a verdict, a report
and in-silico knock-downs. Training is shortened; nothing else is changed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.data.synth import synth_screen

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--device", "cpu", "--steps", "8", "--set", "data.cell_set_len=16", "--set", "train.batch_size=4",
        "--set", "train.val_every=4"]


def raw_count_screen(path: Path) -> None:
    """A tiny built-in screen turned into what a user brings: integer counts in X, no obsm, the
    line in obs['cell_type'] under its own names."""
    adata = synth_screen("tiny", 0)
    rng = np.random.default_rng(0)
    counts = rng.poisson(np.expm1(np.asarray(adata.obsm["X_hvg"], dtype=np.float64)) * 2.0)
    adata.X = sp.csr_matrix(counts.astype(np.float32))
    del adata.obsm["X_hvg"]
    adata.obs = adata.obs.rename(columns={"cell_line": "cell_type"})
    adata.obs["cell_type"] = adata.obs["cell_type"].map({"k562": "k562", "rpe1": "hepg2"}).astype("category")
    adata.uns = {}
    adata.write_h5ad(path)


def page_commands() -> list[list[str]]:
    text = (ROOT / "docs" / "own-data.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [shlex.split(line) for block in blocks for line in block.strip().splitlines() if line.strip()]


@pytest.mark.usefixtures("one_thread")
def test_the_own_data_page_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw_count_screen(tmp_path / "my_screen.h5ad")
    commands = page_commands()
    assert [c[:2] for c in commands] == [["ptrag", "data"], ["ptrag", "data"], ["ptrag", "data"], ["ptrag", "data"],
                                         ["ptrag", "run"], ["ptrag", "report"], ["ptrag", "predict"]]
    outputs = []
    for command in commands:
        args = command[1:] + (FAST if command[1] == "run" else [])
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, (command, result.output)
        assert "Traceback" not in result.output
        outputs.append(" ".join(result.output.split()))
    assert "raw counts" in outputs[0]  # the first look says what is wrong with counts
    assert (tmp_path / "my_screen.prepared.h5ad").is_file() and (tmp_path / "my_split.toml").is_file()
    verdict = [line for line in outputs[4].split("retrieval vs best baseline: ")[1:]]
    assert verdict and verdict[-1].startswith("ptrag-stack")
    assert (tmp_path / "my_report" / "report.html").is_file()
    effects = pd.read_csv(tmp_path / "my_knockdowns" / "effects.csv")
    assert set(effects.gene) == {"CCT7", "FDPS", "TP53"} and set(effects.line) == {"hepg2"}
    assert dict(zip(effects.gene, effects.status, strict=True))["TP53"] == "in silico"


def test_prepare_log_normalises_keeps_the_counts_and_the_targets(tmp_path):
    import anndata as ad

    raw_count_screen(tmp_path / "raw.h5ad")
    out = tmp_path / "prepared.h5ad"
    result = CliRunner().invoke(app, ["data", "prepare", str(tmp_path / "raw.h5ad"), "-o", str(out),
                                      "--n-top-genes", "10"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    raw, done = ad.read_h5ad(tmp_path / "raw.h5ad"), ad.read_h5ad(out)
    counts = raw[:, done.var_names].X.toarray()
    totals = raw.X.toarray().sum(1, keepdims=True)  # per cell, over every gene of the raw screen
    expected = np.log1p(np.divide(counts * 1e4, totals, out=np.zeros_like(counts), where=totals > 0))
    np.testing.assert_allclose(done.X.toarray(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(done.layers["counts"].toarray(), counts)
    targets = set(raw.obs.gene.astype(str)) & set(raw.var_names)
    assert targets <= set(done.var_names) and len(done.var_names) >= 10
    assert done.n_obs == raw.n_obs and list(done.obs.columns) == list(raw.obs.columns)
    again = CliRunner().invoke(app, ["data", "prepare", str(tmp_path / "raw.h5ad"), "-o", str(out)])
    assert again.exit_code == 1 and "exists; ptrag never overwrites a file" in again.output
    twice = CliRunner().invoke(app, ["data", "prepare", str(out), "-o", str(tmp_path / "twice.h5ad")])
    assert twice.exit_code == 1 and "does not hold raw counts" in " ".join(twice.output.split())
    assert not (tmp_path / "twice.h5ad").exists()


def test_presets_are_listed_with_their_source(oracle_package):
    import json

    result = CliRunner().invoke(app, ["plugins", "--presets", "--json"], catch_exceptions=False)
    listed = {p["name"]: p for p in json.loads(result.output)}
    assert listed["ptrag"]["default"] and listed["ptrag-stack"]["generator"] == "stack"
    assert listed["oracle"]["source"] == "ptrag-oracle 0.1.0" and listed["oracle"]["generator"] == "oracle"
