"""One copy of shared inputs per run tree, no checkpoint for models without weights, and finished
checkpoints cut to the weights predictions used; every folder still reads on its own."""

import os

import anndata as ad
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import ptrag.core.runs.train as train_stage
from ptrag.cli.app import app
from ptrag.core.data.synth import synth_screen
from ptrag.core.files import atomic_write, link_if_identical
from ptrag.core.runs.shared import share_with_tree

pytestmark = pytest.mark.usefixtures("one_thread")
BASE = ["--set", "data.synth_preset=tiny", "--set", "data.cell_set_len=8", "--set", "train.batch_size=2",
        "--set", "train.warmup_steps=1", "--device", "cpu", "--steps", "4", "--set", "train.val_every=2"]
SMALL = [*BASE, "--set", "model.hidden_dim=16", "--set", "generator.n_layers=1", "--set", "generator.n_heads=2"]
BASELINES = ["gene-other-lines", "neighbour-mean"]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A trained run (state) and its baseline comparisons."""
    out = tmp_path_factory.mktemp("storage") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        invoke("run", "--preset", "state", *SMALL, "--set", f"compare=[{', '.join(BASELINES)}]", "--out", out)
    finally:
        torch.set_num_threads(threads)
    return out


def test_the_tree_stores_its_real_cells_and_meta_once(tree):
    runs = [tree, *(tree / "compare" / b for b in BASELINES)]
    for name in ("real.h5ad", "meta.pt"):
        assert all(os.path.samefile(tree / name, run / name) for run in runs), name  # hard links: one copy
        assert os.stat(tree / name).st_nlink == len(runs)
    for run in runs:  # and each folder reads on its own, as cell-eval reads it
        real = ad.read_h5ad(run / "real.h5ad")
        assert real.n_obs and ad.read_h5ad(run / "predictions.h5ad").var_names.equals(real.var_names)
    prediction = (tree / "compare" / "gene-other-lines" / "predictions.h5ad")
    assert not os.path.samefile(tree / "predictions.h5ad", prediction)  # different predictions: their own files


def test_no_checkpoint_for_a_baseline_and_a_finished_one_keeps_the_weights_it_used(tree):
    for baseline in BASELINES:
        assert not (tree / "compare" / baseline / "checkpoint.pt").exists()
    ck = torch.load(tree / "checkpoint.pt", weights_only=False)
    assert ck["finished"] and ck["best_model"] and ck["model"] is None and "optimizer" not in ck
    assert ck["meta"] == "meta.pt"  # kept once beside it


def test_a_baseline_folder_predicts_as_it_did_with_a_checkpoint(tree, tmp_path, monkeypatch):
    data = tmp_path / "new.h5ad"
    synth_screen("tiny", 0).write_h5ad(data)
    monkeypatch.setattr(train_stage, "has_own_weights", lambda prep: True)  # as before: a checkpoint of its state
    with_checkpoint = tmp_path / "with"
    invoke("run", "--preset", "neighbour-mean", *BASE, "--set", "compare=[]", "--out", with_checkpoint)
    assert (with_checkpoint / "checkpoint.pt").is_file()
    cells = {}
    for name, run in (("without", tree / "compare" / "neighbour-mean"), ("with", with_checkpoint)):
        invoke("predict", "--run", run, "--data", data, "--out", tmp_path / f"pred-{name}", "--device", "cpu")
        cells[name] = ad.read_h5ad(tmp_path / f"pred-{name}" / "predictions.h5ad")
    assert cells["without"].obs_names.equals(cells["with"].obs_names)
    np.testing.assert_array_equal(np.asarray(cells["without"].X), np.asarray(cells["with"].X))


def test_a_finished_run_resumed_is_read_back_not_rerun(tree):
    before = os.stat(tree / "metrics.json").st_mtime_ns
    result = invoke("run", "--resume", tree)
    assert "finished already" in result.output and os.stat(tree / "metrics.json").st_mtime_ns == before


def test_rewriting_a_shared_file_replaces_the_link_and_never_writes_into_the_twin(tmp_path):
    a, b = tmp_path / "a" / "real.h5ad", tmp_path / "b" / "real.h5ad"
    for path in (a, b):
        path.parent.mkdir()
        path.write_bytes(b"same cells")
    assert link_if_identical(b, [a]) == a and os.path.samefile(a, b)
    atomic_write(b, lambda tmp: tmp.write_bytes(b"other cells"))  # how ptrag writes every file
    assert a.read_bytes() == b"same cells" and b.read_bytes() == b"other cells"
    c = tmp_path / "c.h5ad"
    c.write_bytes(b"different")
    assert link_if_identical(c, [a]) is None and c.read_bytes() == b"different"  # not identical: kept


def test_without_hard_links_every_run_keeps_its_own_copy(tree, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "tree"
    shutil.copytree(tree, copy)  # copies break the links

    def no_links(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    assert share_with_tree(copy / "compare" / "neighbour-mean") == []
    real = copy / "compare" / "neighbour-mean" / "real.h5ad"
    assert not os.path.samefile(real, copy / "real.h5ad") and real.read_bytes() == (copy / "real.h5ad").read_bytes()
    assert not list(real.parent.glob(".*partial*"))  # no debris


def test_overwriting_a_comparison_leaves_the_main_runs_files(tree, tmp_path):
    import shutil

    copy = tmp_path / "tree"
    shutil.copytree(tree, copy)
    share_with_tree(copy / "compare" / "gene-other-lines")
    main = (copy / "real.h5ad").read_bytes()
    invoke("run", "--preset", "gene-other-lines", *BASE, "--set", "compare=[]", "--set", "data.seed=1",
           "--out", copy / "compare" / "gene-other-lines", "--overwrite")
    assert (copy / "real.h5ad").read_bytes() == main  # another screen there now; the main run's cells untouched
    assert not os.path.samefile(copy / "real.h5ad", copy / "compare" / "gene-other-lines" / "real.h5ad")


def test_a_weight_that_copies_the_database_is_stored_once_in_meta(tmp_path):
    from ptrag.core.training.checkpoints import load_checkpoint, save_checkpoint

    response = np.arange(12, dtype=np.float32).reshape(3, 4)
    meta = {"features": ["a", "b", "c", "d"], "database": {"response": response, "embeddings": np.ones((3, 2))}}
    weights = {"candidates.db_response": torch.from_numpy(response.copy()), "w": torch.ones(3, 4)}
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": weights, "best_model": None, "step": 1, "meta": meta})
    raw = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert not torch.is_tensor(raw["model"]["candidates.db_response"]) and torch.is_tensor(raw["model"]["w"])
    back = load_checkpoint(tmp_path / "checkpoint.pt")
    assert torch.equal(back["model"]["candidates.db_response"], weights["candidates.db_response"])
    assert torch.equal(back["model"]["w"], weights["w"]) and back["meta"]["features"] == meta["features"]
