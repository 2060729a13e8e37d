"""The Python API (ptrag.core.api, docs/api.md): AnnData in, AnnData out, one code path with the CLI."""

import errno
import json
import os
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import ptrag
from ptrag.cli.app import app
from ptrag.core.config import ExperimentConfig
from ptrag.core.data.synth import synth_screen
from ptrag.core.errors import DataError, RunFolderError
from ptrag.core.reporting.folders import paired_comparison
from ptrag.core.runs.folder import RUN_FILES
from ptrag.core.training.interrupt import crash_after

pytestmark = pytest.mark.usefixtures("one_thread")
#: a small trained model: fast, but a real set transformer with training steps
SMALL = {"model": {"hidden_dim": 16}, "generator": {"name": "set_transformer", "n_layers": 1, "n_heads": 2},
         "train": {"batch_size": 2, "warmup_steps": 1, "val_every": 2}, "compare": [], "device": "cpu"}
SMALL_SETS = ["model.hidden_dim=16", "generator.n_layers=1", "generator.n_heads=2", "train.batch_size=2",
              "train.warmup_steps=1", "train.val_every=2", "compare=[]", "device=cpu"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def adata():
    return synth_screen("tiny", 0)


@pytest.fixture(scope="module")
def baseline(adata, tmp_path_factory):
    """A finished run on the in-memory AnnData (pert-mean: no training)."""
    return ptrag.run(adata, preset="pert-mean", seed=0, out=tmp_path_factory.mktemp("api") / "pm")


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ptrag.PtragError) and "\n" not in message
    return message


# --------------------------------------------------------------------------- import


def test_import_ptrag_is_light_and_exports_the_api():
    code = ("import sys, ptrag; heavy = [m for m in ('torch', 'anndata', 'pandas') if m in sys.modules]; "
            "print(heavy, ptrag.__version__ != '', callable(ptrag.run), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "True", "True", "True"]  # nothing heavy until the API is used
    assert ptrag.PtragError is ptrag.core.errors.PtragError
    assert {"run", "predict", "score", "compare", "components", "configure"} <= set(dir(ptrag))
    with pytest.raises(AttributeError):
        _ = ptrag.no_such_name


# --------------------------------------------------------------------------- run


def test_run_takes_an_anndata_and_returns_anndata_and_pandas(adata, baseline):
    assert isinstance(baseline.predictions, ad.AnnData) and isinstance(baseline.real, ad.AnnData)
    on_disk = ad.read_h5ad(baseline.run_dir / "predictions.h5ad")
    assert np.array_equal(baseline.predictions.X, on_disk.X)
    assert list(baseline.predictions.obs_names) == list(on_disk.obs_names)
    assert np.array_equal(baseline.real.X, ad.read_h5ad(baseline.run_dir / "real.h5ad").X)
    pd.testing.assert_frame_equal(baseline.metrics, pd.read_csv(baseline.run_dir / "metrics.csv"))
    stored = json.loads((baseline.run_dir / "metrics.json").read_text())["metrics"]
    assert list(baseline.aggregates.index) == list(stored)
    assert baseline.aggregates.loc["mse", "mean"] == pytest.approx(stored["mse"]["mean"])
    # the user's AnnData is not written anywhere; the folder holds only a run's own files
    assert {p.name for p in baseline.run_dir.iterdir()} <= RUN_FILES


def test_in_memory_data_is_fingerprinted_and_left_untouched(adata, tmp_path):
    import torch

    before = adata.obsm["X_hvg"].copy(), adata.obs.copy()
    torch.set_num_threads(2)
    same = {"preset": "pert-mean", "out": tmp_path / "a", "set": ["train.threads=1"]}
    result = ptrag.run(adata, **same)
    assert np.array_equal(adata.obsm["X_hvg"], before[0]) and adata.obs.equals(before[1])
    assert torch.get_num_threads() == 2  # the run used one thread; the session keeps its own
    fingerprint = json.loads((result.run_dir / "fingerprint.json").read_text())
    record = fingerprint["inputs"]["data"]
    assert record["in_memory"] and record["path"] == "in-memory AnnData"
    assert record["hash"] == fingerprint["content"]["data"]["hash"]
    assert json.loads((result.run_dir / "metrics.json").read_text())["run"]["data"] == "in-memory AnnData"
    # the same data again: a finished run; other data: named as different by content hash
    with pytest.raises(RunFolderError, match="already holds this finished run"):
        ptrag.run(adata, **same)
    changed = adata.copy()
    changed.obsm["X_hvg"] = changed.obsm["X_hvg"] * np.float32(1.01)
    with pytest.raises(RunFolderError) as excinfo:
        ptrag.run(changed, **same)
    assert "data: in-memory AnnData differs from that run's (content hash)" in one_line_error(excinfo)


def test_cli_and_api_give_identical_metrics(adata, tmp_path):
    path = tmp_path / "screen.h5ad"
    adata.write_h5ad(path)
    cli = invoke("run", "--data", path, "--preset", "state", "--steps", 4, "--seed", 1, "--out", tmp_path / "cli",
                 *[arg for s in SMALL_SETS for arg in ("--set", s)])
    assert cli.exit_code == 0, cli.output
    from_path = ptrag.run(path, preset="state", steps=4, seed=1, out=tmp_path / "path", **SMALL)
    from_memory = ptrag.run(adata, preset="state", steps=4, seed=1, out=tmp_path / "memory", set=SMALL_SETS)
    assert from_memory.training["steps"] == 4
    expected = pd.read_csv(tmp_path / "cli" / "metrics.csv")
    for result in (from_path, from_memory):
        pd.testing.assert_frame_equal(pd.read_csv(result.run_dir / "metrics.csv"), expected)
        assert json.loads((result.run_dir / "metrics.json").read_text())["metrics"] == \
            json.loads((tmp_path / "cli" / "metrics.json").read_text())["metrics"]
    hashes = [json.loads((tmp_path / f / "metrics.json").read_text())["run"]["fingerprint"]
              for f in ("cli", "path", "memory")]
    assert hashes[0] == hashes[1]  # same config, data, split and embeddings
    hashes[2].pop("config")  # in memory: data.path is empty
    assert hashes[2] == {k: v for k, v in hashes[0].items() if k != "config"}


def test_run_runs_the_comparisons_on_the_same_in_memory_data(adata, tmp_path):
    result = ptrag.run(adata, preset="pert-mean", compare=["control"], keep_cells=False, out=tmp_path / "r")
    [other] = result.comparisons
    assert other.config.preset == "control" and other.run_dir == tmp_path / "r" / "compare" / "control"
    assert json.loads((other.run_dir / "fingerprint.json").read_text())["inputs"]["data"]["in_memory"]
    assert (tmp_path / "r" / "compare.csv").is_file()
    assert result.cells is None and result.predictions.n_obs > 0  # read back from the folder on demand
    with pytest.raises(ptrag.PtragError) as excinfo:
        ptrag.run_comparisons(result)
    assert "pass it again: run_comparisons(result, data=adata)" in one_line_error(excinfo)
    with pytest.raises(DataError, match="differs from the data the run was made on"):
        ptrag.run_comparisons(result, data=synth_screen("tiny", 1))


def test_comparisons_reuse_the_screen_the_main_run_read(tmp_path, monkeypatch):
    import ptrag.core.runs.prepare as experiment

    reads = []
    real_load = experiment.load_screen
    monkeypatch.setattr(experiment, "load_screen", lambda cfg: reads.append(cfg) or real_load(cfg))
    result = ptrag.run(preset="pert-mean", set=["data.synth_preset=tiny"], compare=["control", "gene-other-lines"],
                       comparisons=False, keep_cells=False, out=tmp_path / "r")
    assert len(reads) == 1 and result.screen is not None  # held for the comparisons to come
    ptrag.run_comparisons(result)
    assert len(reads) == 1 and result.screen is None  # read once; released once they have run
    assert all(r.screen is None for r in result.comparisons)
    alone = ptrag.run(preset="pert-mean", set=["data.synth_preset=tiny"], compare=["control"], keep_cells=False,
                      out=tmp_path / "s")
    assert len(reads) == 2 and alone.screen is None and len(alone.comparisons) == 1


def test_a_run_made_in_memory_resumes_with_the_same_anndata(adata, tmp_path):
    from ptrag.core.components.manager import build_manager
    from ptrag.core.data.loading import adata_to_data
    from ptrag.core.runs.experiment import run_experiment

    cfg = ptrag.configure(preset="state", steps=4, out=tmp_path / "r", set=SMALL_SETS)
    cfg.data.path = None
    with crash_after(2), pytest.raises(KeyboardInterrupt):  # killed after step 2 (checkpoint at step 2)
        run_experiment(cfg, build_manager(), data=adata_to_data(adata, cfg.data, "in-memory AnnData"))
    with pytest.raises(RunFolderError) as excinfo:  # without the AnnData: the built-in data is not the run's
        ptrag.run(resume=tmp_path / "r")
    assert "data file: in-memory AnnData -> None" in one_line_error(excinfo)
    resumed = ptrag.run(adata, resume=tmp_path / "r")
    whole = ptrag.run(adata, preset="state", steps=4, out=tmp_path / "whole", set=SMALL_SETS)
    assert resumed.training["steps"] == 4
    pd.testing.assert_frame_equal(resumed.metrics, whole.metrics)


# --------------------------------------------------------------------------- configure


def test_configure_resolves_like_the_cli(tmp_path):
    cfg = ptrag.configure(preset="state", seed=3, steps=7, train={"steps": 5, "lr": 0.01},
                          retriever={"name": "exact", "k": 4}, pert_col="guide_target", embed_key="X",
                          set=["train.lr=0.02"])
    assert cfg.preset == "state" and cfg.seed == 3
    assert cfg.train.steps == 7 and cfg.train.lr == 0.02  # named arguments beat overrides; set= beats both
    assert cfg.retriever.name == "exact" and cfg.retriever.params["k"] == 4
    assert cfg.data.pert_col == "guide_target" and cfg.data.embed_key == "X"
    assert ptrag.configure(config=cfg) == cfg
    assert ptrag.configure(config={"preset": "state", "seed": 2}).seed == 2
    path = tmp_path / "exp.yaml"
    path.write_text("preset: state\nseed: 4\n")
    assert ptrag.configure(config=path).seed == 4
    with pytest.raises(ptrag.PtragError) as excinfo:
        ptrag.configure(trian={"steps": 5})
    assert one_line_error(excinfo).startswith("unknown keyword argument(s) trian; config keys: ")
    with pytest.raises(ptrag.PtragError, match="unknown retriever 'nosuch'; available retrievers: "):
        ptrag.configure(retriever="nosuch")
    assert isinstance(ptrag.configure(), ExperimentConfig)


# --------------------------------------------------------------------------- predict


def test_predict_on_a_new_anndata_matches_the_cli(adata, baseline, tmp_path):
    new = adata[adata.obs["cell_line"] == "k562"].copy()
    new.obs = new.obs.rename(columns={"gene": "target"})  # the new data names its columns itself
    before = sorted(p.name for p in baseline.run_dir.iterdir())
    in_memory = ptrag.predict(baseline, new, pert_col="target")
    assert in_memory.folder is None and sorted(p.name for p in baseline.run_dir.iterdir()) == before
    assert in_memory.groups and all(c == "k562" for _, c in in_memory.groups)
    assert isinstance(in_memory.predictions, ad.AnnData) and in_memory.real.n_obs > 0
    # the same cells from a file through `ptrag predict`: the same metrics
    path = tmp_path / "new.h5ad"
    adata[adata.obs["cell_line"] == "k562"].copy().write_h5ad(path)
    result = invoke("predict", "--run", baseline.run_dir, "--data", path, "--out", tmp_path / "cli", "--device", "cpu")
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli" / "metrics.csv"), in_memory.metrics)
    written = ptrag.predict(baseline.run_dir, new, pert_col="target", out=tmp_path / "api", keep_cells=False)
    assert written.cells is None and (tmp_path / "api" / "predictions.h5ad").is_file()
    assert np.array_equal(written.predictions.X, in_memory.predictions.X)
    fingerprint = json.loads((tmp_path / "api" / "fingerprint.json").read_text())
    assert fingerprint["kind"] == "prediction" and fingerprint["inputs"]["data"]["in_memory"]
    with pytest.raises(ptrag.PtragError) as excinfo:
        ptrag.predict(baseline, new)  # the column is called `target` here
    assert "obs has no perturbation column 'gene'" in one_line_error(excinfo)


# --------------------------------------------------------------------------- score


def test_score_reproduces_a_runs_metrics_and_takes_any_metric_set(baseline):
    scores = ptrag.score(baseline.predictions, baseline.real)
    pd.testing.assert_frame_equal(scores.metrics, baseline.metrics)
    assert scores.summary == baseline.summary
    files = ptrag.score(baseline.run_dir / "predictions.h5ad", baseline.run_dir / "real.h5ad",
                        metrics=["energy", {"name": "de-overlap", "k": 5}])
    assert list(files.summary) == ["energy", "de-overlap@5"]
    energy = baseline.metrics[baseline.metrics.metric == "energy"].reset_index(drop=True)
    pd.testing.assert_frame_equal(files.metrics[files.metrics.metric == "energy"].reset_index(drop=True), energy)
    with pytest.raises(ptrag.PtragError, match="unknown metric 'nosuch'"):
        ptrag.score(baseline.predictions, baseline.real, metrics=["nosuch"])


def test_score_refuses_mismatched_inputs_in_one_line(baseline):
    real = baseline.real
    with pytest.raises(DataError) as excinfo:
        ptrag.score(baseline.predictions[:, ::-1].copy(), real)
    assert "features differ" in one_line_error(excinfo)
    first = baseline.metrics["pert"].iloc[0]
    with pytest.raises(DataError) as excinfo:
        ptrag.score(baseline.predictions, real[real.obs["gene"] != first].copy())
    assert f"have no real cells in real (in-memory AnnData) (first: {first}/" in one_line_error(excinfo)


# --------------------------------------------------------------------------- compare, components


def test_compare_is_the_reports_paired_test(adata, baseline, tmp_path):
    control = ptrag.run(adata, preset="control", out=tmp_path / "control")
    table = ptrag.compare(baseline, control)
    pd.testing.assert_frame_equal(table, paired_comparison(baseline.run_dir, control.run_dir))
    assert set(table.metric) == set(baseline.summary) and (table.n == baseline.metrics.pert.nunique()).all()
    in_memory = ptrag.compare(ptrag.score(baseline.predictions, baseline.real),
                              ptrag.score(control.predictions, control.real))
    pd.testing.assert_frame_equal(in_memory, table)
    builtin = ptrag.run(preset="control", set=["data.synth_preset=tiny", "data.seed=5"], out=tmp_path / "other")
    with pytest.raises(RunFolderError) as excinfo:
        ptrag.compare(baseline, builtin)
    assert "made on different data" in one_line_error(excinfo)


def test_components_are_the_plugins_command_records():
    listed = json.loads(invoke("plugins", "--all", "--json").output)
    assert ptrag.components() == listed
    assert ptrag.components(include_builtin=False) == json.loads(invoke("plugins", "--json").output)
    retrievers = ptrag.components("retriever")
    assert {c["kind"] for r in retrievers for c in r["components"]} == {"retriever"}
    assert {"exact", "faiss", "hnsw"} <= {c["name"] for r in retrievers for c in r["components"]}
    with pytest.raises(ptrag.PtragError) as excinfo:
        ptrag.components("retreiver")
    assert one_line_error(excinfo) == "unknown kind 'retreiver'; kinds: retriever, selector, generator, metric"


# --------------------------------------------------------------------------- errors


def test_errors_are_one_line_ptrag_errors(adata, tmp_path, monkeypatch):
    no_column = adata.copy()
    del no_column.obs["cell_line"]
    with pytest.raises(DataError) as excinfo:
        ptrag.run(no_column, preset="pert-mean", out=tmp_path / "x")
    assert one_line_error(excinfo).startswith("in-memory AnnData: obs has no cell line column 'cell_line'")
    assert not (tmp_path / "x").exists()  # refused before the run folder was made
    with pytest.raises(ptrag.PtragError, match="expected an AnnData or an .h5ad path, got list"):
        ptrag.run([1, 2])
    (tmp_path / "file").write_text("")
    with pytest.raises(RunFolderError, match="exists and is a file"):
        ptrag.run(adata, preset="pert-mean", out=tmp_path / "file")
    # a filesystem error deep inside a write comes out as the CLI prints it, as a PtragError
    from ptrag.core.runs.cells import CellEvalData

    def full_disk(self, run_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run_dir / "predictions.h5ad"))

    monkeypatch.setattr(CellEvalData, "write", full_disk)
    with pytest.raises(ptrag.PtragError) as excinfo:
        ptrag.run(adata, preset="pert-mean", out=tmp_path / "y")
    assert one_line_error(excinfo) == f"{tmp_path / 'y' / 'predictions.h5ad'}: No space left on device"
    assert not (tmp_path / "y" / "metrics.json").exists()
