"""Focused tests of the adversarial round's findings that a bad-input case cannot show (a case may
change no prepared file): a stack resumed after a member's predictions.h5ad was edited, a split
TOML read back, the batch-memory check, the API's gene types, a report folder written twice.
The round itself: tests/bad_inputs/adversarial-round.md; its cases: tests/bad_inputs/cases_adversarial.py."""

from __future__ import annotations

import json
import sys

import anndata as ad
import numpy as np
import pytest
from typer.testing import CliRunner

import ptrag
from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.config import DataConfig, resolve_config
from ptrag.core.data.dataset import PERT
from ptrag.core.data.loading import load_screen
from ptrag.core.data.split import Split, read_split_spec, split_to_toml
from ptrag.core.errors import ConfigError
from ptrag.core.files import read_json
from ptrag.core.markup import load_yaml
from ptrag.core.runs import experiment, train
from ptrag.core.runs.cells import CONTROL_CELL, PREDICTIONS_DIGEST
from ptrag.core.runs.ensemble import saved_predictions
from ptrag.core.runs.marker import MARKER

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["--set", "data.synth_preset=tiny"]
STACK = ["data.synth_preset=tiny", "device=cpu", "data.cell_set_len=16", "train.batch_size=4", "train.val_every=4",
         "train.steps=8", "compare=[]", "generator.backbone=state", "generator.partners=[gene-other-lines]"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_stack_never_reuses_a_members_edited_predictions(tmp_path):
    """The member's file was edited after its run wrote it: the stack predicts the member's groups
    again, so its predictions are those of the untouched member (state is the backbone here, so
    its cells are the stack's own)."""
    manager = build_manager(entry_points=False)
    out = tmp_path / "stack"
    experiment.run_experiment(resolve_config(None, preset="ptrag-stack", manager=manager,
                                             sets=[*STACK, f"output.dir={out}"]), manager)
    before = ad.read_h5ad(out / "predictions.h5ad")
    member = out / "compare" / "state" / "predictions.h5ad"
    edited = ad.read_h5ad(member)
    edited.X = edited.X * 10
    edited.write_h5ad(member)
    (out / "metrics.json").unlink()  # the stack stopped before it finished: --resume continues it
    result = invoke("run", "--resume", out)
    assert result.exit_code == 0, result.output
    assert "is not the file its run wrote" in result.output
    after = ad.read_h5ad(out / "predictions.h5ad")
    np.testing.assert_allclose(np.asarray(after.X.todense() if hasattr(after.X, "todense") else after.X),
                               np.asarray(before.X.todense() if hasattr(before.X, "todense") else before.X), rtol=1e-5)


def test_saved_cells_whose_controls_are_not_controls_are_not_reused(tmp_path):
    """A predictions.h5ad (from before content hashes) whose matched controls name perturbed
    cells: its groups are predicted again, never copied with those names."""
    out = tmp_path / "pm"
    assert invoke("run", "--preset", "pert-mean", *TINY, "--out", out).exit_code == 0
    data = load_screen(DataConfig(synth_preset="tiny"))
    assert saved_predictions(out, data)  # untouched: every test group is reused
    body = json.loads((out / "metrics.json").read_text())
    del body["run"]["outputs"][PREDICTIONS_DIGEST]
    (out / "metrics.json").write_text(json.dumps(body))
    pred = ad.read_h5ad(out / "predictions.h5ad")
    perturbed = data.obs.index[data.obs[PERT].astype(str) != "non-targeting"].astype(str).to_numpy()
    names = pred.obs[CONTROL_CELL].astype(object).to_numpy()
    rows = np.flatnonzero(pred.obs[CONTROL_CELL].notna().to_numpy() & (pred.obs["gene"] != "non-targeting"))
    names[rows] = perturbed[: len(rows)]
    pred.obs[CONTROL_CELL] = names
    pred.write_h5ad(out / "predictions.h5ad")
    assert saved_predictions(out, data) == {}


def test_a_split_toml_reads_back_whatever_the_dataset_is_called(tmp_path):
    name = 'x"]\n[evil\x7f😀'
    split = Split(train=[("A", "k562")], val=[("B", "line\n2")], test=[("C\"", "line\n2")], description="a\nb")
    path = tmp_path / "s.toml"
    path.write_text(split_to_toml(split, name, "/data/screen.h5ad"))
    spec = read_split_spec(path)
    assert set(spec["datasets"]) == {name} and set(spec) == {"datasets", "training", "zeroshot", "fewshot"}
    assert spec["fewshot"] == {f"{name}.line\n2": {"val": ["B"], "test": ['C"']}}


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_training(monkeypatch, tmp_path):
    monkeypatch.setattr(train, "_memory", lambda: 2**30)  # a machine of 1 GiB
    manager = build_manager(entry_points=False)
    config = resolve_config(None, preset="state", manager=manager, sets=[
        "data.synth_preset=tiny", "device=cpu", "data.cell_set_len=100000", f"output.dir={tmp_path / 'r'}"])
    with pytest.raises(ConfigError, match=r"data.cell_set_len=100,000 cells x 64 features needs 1.5 GiB .* half of "
                                          r"this machine's 1.0 GiB"):
        experiment.run_experiment(config, manager)
    assert not (tmp_path / "r").exists()
    monkeypatch.setattr(train, "_memory", lambda: None)  # a system that does not say: no check
    train.check_batch_size(type("P", (), {"config": config, "data": load_screen(config.data)})())


@pytest.mark.parametrize("genes", [None, 3, [1, 2], ["CCT7", None]])
def test_the_api_names_genes_that_are_not_text(genes, tmp_path):
    out = tmp_path / "pm"
    assert invoke("run", "--preset", "pert-mean", *TINY, "--out", out).exit_code == 0
    with pytest.raises(ptrag.PtragError, match="genes: expected gene symbols"):
        ptrag.predict_knockdowns(out, genes, "rpe1")


def test_a_report_folder_is_written_again_and_keeps_the_users_files(tmp_path):
    run = tmp_path / "pm"
    assert invoke("run", "--preset", "pert-mean", *TINY, "--out", run).exit_code == 0
    assert invoke("report", run).exit_code == 0
    assert read_json(run / "report" / MARKER)["kind"] == "report"
    (run / "report" / "mine.txt").write_text("notes\n")
    assert invoke("report", run).exit_code == 0  # its own files are written again; the user's stays
    assert (run / "report" / "mine.txt").read_text() == "notes\n"
    (run / "report" / MARKER).unlink()  # a report folder of a ptrag before report markers
    (run / "report" / "mine.txt").unlink()
    assert invoke("report", run).exit_code == 0


def test_records_that_are_not_objects_read_as_missing(tmp_path):
    (tmp_path / "a.json").write_text("[1, 2]")
    (tmp_path / "b.json").write_text('{"kind": "run"}')
    assert read_json(tmp_path / "a.json") is None and read_json(tmp_path / "b.json") == {"kind": "run"}


def test_yaml_merge_keys_may_still_be_overridden():
    assert load_yaml("a: &a {x: 1, y: 2}\nb: {<<: *a, x: 3}\n", "c.yaml") == {"a": {"x": 1, "y": 2},
                                                                             "b": {"x": 3, "y": 2}}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
