"""Data checks up front and no silent adjustment of what was asked (core/checks.py, validation)."""

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.components.assembly import embedding_readers
from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.data.embeddings import read_gene_embeddings
from ptrag.core.data.synth import synth_screen
from ptrag.core.data.validation import ValueCheck
from ptrag.core.errors import DataError
from ptrag.core.hookspecs import BuildContext

TINY = ["--set", "data.synth_preset=tiny"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def problem(matrix):
    check = ValueCheck("obsm['X_hvg']", "screen.h5ad")
    check.update(np.asarray(matrix, dtype=np.float32), [f"c{i}" for i in range(len(matrix))])
    return check.expression_problem()


def test_expression_checks_tell_counts_from_log_normalised():
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(50, 40)).astype(float)
    counts[0, 0] = 60
    assert "looks like raw counts" in problem(counts) and "median library size" in problem(counts)
    logged = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    assert problem(logged) is None
    assert "not log-transformed" in problem(counts / counts.sum(1, keepdims=True) * 1e4)
    assert problem(rng.integers(0, 2, size=(20, 10))) is None  # too few values to tell counts from anything
    shallow = rng.poisson(0.5, size=(200, 40)).astype(float)  # a shallow screen: integers, none above 15
    assert shallow.max() <= 15 and "looks like raw counts (integer values up to" in problem(shallow)
    assert problem(np.log1p(shallow / np.maximum(shallow.sum(1, keepdims=True), 1) * 1e4)) is None
    assert "all zeros" in problem(np.zeros((5, 4)))
    assert "one constant value" in problem(np.full((5, 4), 3.5))


def _built(preset, **params):
    manager = build_manager(entry_points=False)
    cfg = resolve_config(None, preset=preset, manager=manager)
    ctx = BuildContext(n_genes=8, embed_dim=4, hidden_dim=16, n_contexts=2, n_perts=3, context_names=("a", "b"))
    from ptrag.core.config import component_params

    return [manager.get(kind, getattr(cfg, kind).name).build(component_params(getattr(cfg, kind), kind, manager), ctx)
            for kind in ("retriever", "generator")]


@pytest.mark.parametrize("preset, users", [
    ("state", []), ("pert-mean", []), ("gene-other-lines", []), ("control", []), ("context-mean", []),
    ("state-genept", ["set_transformer"]), ("linear", ["linear"]), ("ptrag", ["exact", "set_transformer"]),
    ("neighbour-mean", ["exact"]),
])
def test_which_components_read_gene_embeddings(preset, users):
    assert embedding_readers(*_built(preset)) == users


def test_third_party_components_count_as_readers():
    class Mine:
        name = "mine"

    assert embedding_readers(Mine()) == ["mine"]


def _test_genes(adata, path):
    from ptrag.core.config import DataConfig
    from ptrag.core.data.loading import read_screen
    from ptrag.core.data.split import resolve_split

    adata.write_h5ad(path)
    return sorted(p for p, _ in resolve_split(DataConfig(), read_screen(path, DataConfig()), 0).test)


@pytest.fixture(scope="module")
def renamed(tmp_path_factory):
    """Tiny data where one held-out gene of the default split has no embedding, and one where none has."""
    root = tmp_path_factory.mktemp("renamed")
    tiny = synth_screen("tiny", 0)
    genes = tiny.obs["gene"].astype(str)
    held = _test_genes(tiny, root / "tiny.h5ad")[-1]  # a test gene of the default split (seed 0) ...
    one = tiny.copy()
    one.obs["gene"] = np.where(genes == held, held + "X", genes).astype(object)  # ... renamed, same sort position
    one.uns["renamed"] = held + "X"
    assert held + "X" in _test_genes(one, root / "one.h5ad")
    every = tiny.copy()
    every.obs["gene"] = np.where(genes == "non-targeting", genes, "ZZ" + genes).astype(object)
    every.write_h5ad(root / "every.h5ad")
    return root


def test_an_accepted_drop_is_counted_after_the_drop_everywhere(renamed, tmp_path):
    out = tmp_path / "r"
    result = invoke("run", "--preset", "linear", "--data", renamed / "one.h5ad", "--set", "data.max_dropped_test=1",
                    "--out", out)
    assert result.exit_code == 0, result.output
    run = json.loads((out / "metrics.json").read_text())["run"]
    assert run["n_test_groups"] == 8
    assert "left: " in run["split"] and " / 8 test groups" in run["split"]  # the counts after the drop
    [drop] = [d for d in run["dropped"] if d["reason"] == "without a gene embedding"]
    assert drop["first"] == [ad.read_h5ad(renamed / "one.h5ad").uns["renamed"]]
    assert drop["groups"] == {"train": 1, "val": 0, "test": 1}
    assert pd.read_csv(out / "metrics.csv")[["pert", "context"]].drop_duplicates().shape[0] == 8
    assert "split: random few-shot" in result.output and "/ 8 test groups" in result.output


def test_a_run_that_reads_no_embedding_drops_nothing(renamed, tmp_path):
    out = tmp_path / "r"
    result = invoke("run", "--preset", "state", *[a for s in ("model.hidden_dim=16", "generator.n_heads=2",
                                                             "generator.n_layers=1", "compare=[]")
                                                  for a in ("--set", s)],
                    "--steps", "2", "--set", "train.val_every=2", "--data", renamed / "every.h5ad", "--out", out)
    assert result.exit_code == 0, result.output
    run = json.loads((out / "metrics.json").read_text())["run"]
    assert run["n_test_groups"] == 9 and run["dropped"] == []
    assert "kept, since no component of this run reads gene embeddings" in result.output


def test_predict_applies_the_runs_policy(renamed, tmp_path):
    run = tmp_path / "r"
    assert invoke("run", "--preset", "linear", *TINY, "--set", "data.missing_embedding=zero", "--out",
                  run).exit_code == 0
    result = invoke("predict", "--run", run, "--data", renamed / "every.h5ad", "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    assert "policy zero: they get a zero vector" in result.output
    assert json.loads((tmp_path / "p" / "metrics.json").read_text())["run"]["n_groups"] == 60
    strict = tmp_path / "strict"
    assert invoke("run", "--preset", "linear", *TINY, "--set", "data.missing_embedding=drop", "--set",
                  "data.max_dropped_test=1", "--out", strict).exit_code == 0
    result = invoke("predict", "--run", strict, "--data", renamed / "one.h5ad", "--out", tmp_path / "q")
    assert result.exit_code == 0, result.output
    body = json.loads((tmp_path / "q" / "metrics.json").read_text())["run"]
    assert body["n_groups"] == 58  # the renamed gene's 2 groups are left out, as the run would
    assert body["dropped"][0]["first"] == [ad.read_h5ad(renamed / "one.h5ad").uns["renamed"]]


def test_k_above_the_database_is_resolved_in_config_yaml(tmp_path):
    out = tmp_path / "r"
    result = invoke("run", "--preset", "neighbour-mean", *TINY, "--set", "retriever.k=500", "--out", out)
    assert result.exit_code == 0 and "using k=48, written to config.yaml" in result.output
    assert yaml.safe_load((out / "config.yaml").read_text())["retriever"]["k"] == 48
    assert json.loads((out / "fingerprint.json").read_text())["config"]["retriever"]["k"] == 500  # as asked
    assert pd.read_csv(out / "retrieval.csv").groupby(["pert", "context"]).size().max() <= 48
    for again in (["--set", "retriever.k=500"], ["--config", out / "config.yaml"]):  # both name this run
        refused = CliRunner().invoke(app, ["run", "--preset", "neighbour-mean", *TINY, *map(str, again), "--out",
                                           str(out)])
        assert refused.exit_code == 1 and "already holds this finished run" in refused.stderr


def test_steps_0_is_warned_and_the_untrained_run_can_predict(tmp_path):
    run = tmp_path / "r"
    result = invoke("run", "--preset", "state", *TINY, "--set", "model.hidden_dim=16", "--set", "generator.n_heads=2",
                    "--set", "compare=[]", "--steps", "0", "--out", run)
    assert result.exit_code == 0 and "train.steps=0: the model is evaluated untrained" in result.output
    assert (run / "checkpoint.pt").is_file()
    path = tmp_path / "new.h5ad"
    synth_screen("tiny", 0).write_h5ad(path)
    assert invoke("predict", "--run", run, "--data", path, "--out", tmp_path / "p").exit_code == 0


def test_state_perturbation_features_are_a_gene_embedding_table(tmp_path):
    torch.save({"CCT2": torch.ones(4), "EXOSC8": torch.arange(4.0)}, tmp_path / "pert.pt")
    table = read_gene_embeddings(tmp_path / "pert.pt")
    assert table.names == ["CCT2", "EXOSC8"] and table.dim == 4
    np.testing.assert_array_equal(table.matrix[1], [0, 1, 2, 3])
    torch.save({"A": torch.ones(2, 2)}, tmp_path / "flat.pt")
    with pytest.raises(DataError, match="has shape \\(2, 2\\); expected 1-D"):
        read_gene_embeddings(tmp_path / "flat.pt")
    torch.save({"A": torch.ones(2), "B": torch.ones(3)}, tmp_path / "ragged.pt")
    with pytest.raises(DataError, match="different lengths"):
        read_gene_embeddings(tmp_path / "ragged.pt")
    (tmp_path / "code.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="not a torch-saved dict of tensors"):
        read_gene_embeddings(tmp_path / "code.pt")


def test_a_state_feature_file_feeds_a_run(tmp_path):
    tiny = synth_screen("tiny", 0)
    genes = sorted(set(tiny.obs["gene"].astype(str)) - {"non-targeting"})
    rng = np.random.default_rng(0)
    torch.save({g: torch.from_numpy(rng.standard_normal(6).astype(np.float32)) for g in genes}, tmp_path / "f.pt")
    result = invoke("run", "--preset", "linear", *TINY, "--set", f"data.gene_embeddings={tmp_path / 'f.pt'}",
                    "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["run"]["dropped"] == []


def test_data_inspect_warns_about_raw_counts(tmp_path):
    tiny = synth_screen("tiny", 0)
    tiny.obsm["X_hvg"] = np.round(np.expm1(np.asarray(tiny.obsm["X_hvg"])) * 4).astype(np.float32)
    tiny.write_h5ad(tmp_path / "counts.h5ad")
    result = invoke("data", "inspect", tmp_path / "counts.h5ad")
    assert result.exit_code == 0 and "warning:" in result.output and "looks like raw counts" in result.output
    assert "median library size" in result.output
