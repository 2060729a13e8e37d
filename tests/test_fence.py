"""Plugins cannot corrupt results (core/components/fence.py, core/components/readonly.py): a
metric that writes into its arrays fails and changes nothing, in-place edits of a call's tensors
are caught, a plugin's prints never reach stdout, sys.exit from code ptrag calls is an error."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import ptrag
from ptrag.cli.app import app
from ptrag.core.components.assembly import build_metrics
from ptrag.core.components.guards import ContractError
from ptrag.core.components.manager import build_manager
from ptrag.core.components.readonly import Untouched, frozen
from ptrag.core.config import ComponentChoice
from ptrag.core.errors import PtragError
from ptrag.core.evaluation.scoring import GroupPrediction, score
from ptrag.core.hookspecs import BuildContext

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def plugins(monkeypatch):
    def put(name: str) -> None:
        monkeypatch.syspath_prepend(str(FIXTURES / name))
        importlib.invalidate_caches()

    yield put
    for module in ("ptrag_misbehaving", "ptrag_noisy", "ptrag_noisy_exit"):
        sys.modules.pop(module, None)


def _groups(seed: int = 0) -> list[GroupPrediction]:
    rng = np.random.default_rng(seed)
    ctrl = rng.gamma(2.0, 1.0, (40, 12)).astype(np.float32)
    return [GroupPrediction(f"G{i}", "line", ctrl[:10] + rng.normal(0, 1, (10, 12)).astype(np.float32),
                            ctrl[10:20] + rng.normal(i, 1, (10, 12)).astype(np.float32), ctrl) for i in range(4)]


def test_a_metric_that_writes_into_pred_fails_and_changes_nothing(plugins):
    plugins("misbehaving")
    manager = build_manager()
    ctx = BuildContext(n_genes=12, gene_names=tuple(f"g{i}" for i in range(12)), seed=0)
    names = ["mse", "pearson-delta", "discrimination"]
    groups = _groups()
    cells = [(g.pred.copy(), g.real.copy(), g.ctrl.copy()) for g in groups]
    clean = score(groups, build_metrics([ComponentChoice(name=n) for n in names], manager, ctx))
    for bad in ("writes-pred", "writes-set"):  # first, so that every later metric would see the edit
        metrics = build_metrics([ComponentChoice(name=n) for n in [bad, *names]], manager, ctx)
        with pytest.raises(ContractError, match=f"metric '{bad}' .*read-only"):
            score(groups, metrics)
    for g, (pred, real, ctrl) in zip(groups, cells, strict=True):  # the cells predictions.h5ad is written from
        assert np.array_equal(g.pred, pred) and np.array_equal(g.real, real) and np.array_equal(g.ctrl, ctrl)
    again = score(groups, build_metrics([ComponentChoice(name=n) for n in names], manager, ctx))
    assert again.equals(clean)


def test_read_only_views_leave_the_array_writable_for_ptrag():
    array = np.zeros(3)
    view = frozen(array)
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 1.0
    array[0] = 2.0
    assert view[0] == 2.0 and array.flags.writeable


def test_in_place_edits_of_a_calls_tensors_and_arrays_are_caught():
    component = type("C", (), {"_ptrag_label": "generator 'g' (plugin p, package ptrag-p 1.0)"})()
    batch = {"ctrl": torch.zeros(2, 3), "ids": torch.arange(3)}
    keys = np.ones((4, 2), np.float32)
    untouched = Untouched([("batch", batch), ("keys", keys)])
    _ = batch["ctrl"] + 1, keys / 2  # new values: fine
    untouched.check(component, "forward")
    batch["ctrl"][0].add_(1)  # through a view
    with pytest.raises(ContractError, match=r"forward changed its input batch\['ctrl'\] in place"):
        untouched.check(component, "forward")
    untouched = Untouched([("keys", keys)])
    keys /= 2
    with pytest.raises(ContractError, match="changed its input keys in place.*arr = arr / n"):
        untouched.check(component, "build")


def test_plugins_json_stays_json_while_plugins_print(plugins):
    plugins("noisy")
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    records = {r["plugin"]: r for r in json.loads(result.stdout)}
    assert records["noisy"]["status"] == "ok" and records["noisy-exit"]["status"] == "failed"
    assert "it called sys.exit(0)" in records["noisy-exit"]["error"]
    assert "ptrag-noisy: loading, hello!" in result.stderr and "offering metrics" in result.stderr


def test_a_run_prints_its_folder_last_while_a_metric_prints(plugins, tmp_path, one_thread):
    plugins("noisy")
    result = CliRunner().invoke(app, ["run", "--preset", "pert-mean", "--set", "data.synth_preset=tiny", "--set",
                                      "metrics=[mse, chatty]", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == str(tmp_path / "r") and "chatty:" not in result.stdout
    assert "chatty: scoring" in result.stderr


def test_sys_exit_from_code_ptrag_calls_is_an_error_and_leaves_no_folder(tmp_path, one_thread):
    def log(message: str) -> None:  # a callback, not a plugin: ptrag does not fence it
        sys.exit(0)

    with pytest.raises(PtragError, match=r"run was ended by sys.exit\(0\)"):
        ptrag.run(preset="pert-mean", set=["data.synth_preset=tiny"], out=tmp_path / "r", log=log,
                  comparisons=False)
    assert not (tmp_path / "r").exists()
