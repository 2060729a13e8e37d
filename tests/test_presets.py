"""Presets: the paper's models and every baseline run end to end on the tiny data."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.registry import load_registry
from ptrag.core.runs.experiment import run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["data.synth_preset=tiny", "model.hidden_dim=16", "data.cell_set_len=8", "train.batch_size=2",
        "train.steps=3", "train.val_every=3", "device=cpu", "compare=[]"]
PAPER = {"ptrag", "vanilla-rag", "state", "state-genept", "ptrag-response", "ptrag-evidence"}
BASELINES = {"control", "pert-mean", "context-mean", "linear", "neighbour-mean", "gene-other-lines"}




def test_registry_has_the_paper_presets_and_ptrag_is_the_default():
    registry = load_registry()
    assert PAPER | BASELINES <= set(registry.presets) and registry.default_preset == "ptrag"
    manager = build_manager(entry_points=False)
    cfg = resolve_config(None, manager=manager)
    assert (cfg.retriever.name, cfg.retriever.params["k"], cfg.selector.name, cfg.generator.name) == \
        ("exact", 32, "gumbel", "set_transformer")
    assert cfg.selector.params["sparsity_weight"] == 0.1 and cfg.selector.params["tau"] == 0.5
    assert cfg.model.hidden_dim == 128 and cfg.data.cell_set_len == 64 and cfg.model.exclude_same_gene
    assert cfg.compare == ["ptrag-evidence", "state", "gene-other-lines", "neighbour-mean", "pert-mean", "ptrag-stack"]
    assert cfg.budget == "converge" and cfg.train.steps == 3000 and cfg.train.patience == 6  # until it converges
    assert cfg.train.min_delta == 0.002 and cfg.train.val_every == 50
    assert cfg.selector.params["sample_at_eval"] and cfg.selector.params["context_from"] == "triple"  # the authors'
    demo = resolve_config(None, budget="demo", manager=manager)
    assert demo.budget == "demo" and demo.train.steps == 400 and demo.train.patience == 4  # still selectable
    state = resolve_config(None, preset="state", manager=manager)
    assert state.retriever.name == "none" and state.generator.params["pert_encoding"] == "onehot"
    response = resolve_config(None, preset="ptrag-response", manager=manager)
    assert response.model.context == "both" and not response.model.exclude_same_gene


@pytest.mark.parametrize("preset", sorted(PAPER | BASELINES))
def test_every_preset_runs_on_tiny(tmp_path, preset):
    manager = build_manager(entry_points=False)
    sets = [*FAST, f"output.dir={tmp_path / preset}"]
    if resolve_config(None, preset=preset, manager=manager).generator.name == "set_transformer":
        sets += ["generator.n_layers=1", "generator.n_heads=2"]
    result = run_experiment(resolve_config(None, preset=preset, sets=sets, manager=manager), manager)
    assert len(result.metrics) and result.metrics.value.notna().any()
    assert (result.training is not None) == (preset in PAPER)
    if preset in ("ptrag", "vanilla-rag", "ptrag-response", "neighbour-mean"):
        assert len(result.retrieval) > 0
        same_gene = (result.retrieval.pert == result.retrieval.candidate_pert).any()
        assert same_gene == (preset == "ptrag-response")  # only it may retrieve the gene in other lines


def test_default_run_compares_with_the_baselines_and_ends_with_the_retrieval_verdict(tmp_path):
    out = tmp_path / "run"
    sets = [*FAST[:-1], "generator.n_layers=1", "generator.n_heads=2"]
    result = CliRunner().invoke(app, ["run", *sum((["--set", s] for s in sets), []), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    compared = ["ptrag-evidence", "state", "gene-other-lines", "neighbour-mean", "pert-mean", "ptrag-stack"]
    assert f"ptrag vs {', '.join(compared)}" in " ".join(result.output.split())
    lines = result.output.strip().splitlines()
    assert lines[-1] == str(out)
    # one verdict line per trained retrieval model and ensemble, the stack's last, just before the folder
    verdicts = [line for line in lines if line.startswith("retrieval vs best baseline:")]
    assert [v.split()[4] for v in verdicts] == ["ptrag", "ptrag-evidence", "ptrag-stack"]
    assert lines[-4:-1] == verdicts
    assert lines[-5].startswith("Best on this split (paired Wilcoxon")  # the bottom line, just before them
    summary = pd.read_csv(out / "report" / "summary.csv")  # ptrag run wrote its report, every comparison in it
    assert list(dict.fromkeys(summary.run)) == ["ptrag", *compared]
    table = pd.read_csv(out / "verdict.csv")
    assert set(table.run) == {"ptrag", "ptrag-evidence", "ptrag-stack"}
    assert set(table.metric) == {"energy", "pearson-delta"}
    # the stack's members are the comparisons already run, read back rather than trained again
    assert "state: finished already" in result.output and "gene-other-lines: finished already" in result.output
    assert set(table.baseline) <= {"gene-other-lines", "neighbour-mean", "pert-mean"}
    for name in compared:
        metrics = json.loads((out / "compare" / name / "metrics.json").read_text())
        assert metrics["run"]["split"] == json.loads((out / "metrics.json").read_text())["run"]["split"]
    assert (out / "compare.csv").is_file()
