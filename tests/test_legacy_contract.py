"""A plugin written to ptrag 0.1's contract still runs, through the adapter, with one warning per
component (docs/writing-a-plugin.md, 'Migrating from ptrag 0.1')."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest

from ptrag.core.components.adapters import LegacyContractWarning
from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.runs.experiment import run_experiment
from ptrag.core.runs.reload import load_run

FOLDER = Path(__file__).parent / "fixtures" / "legacy"
NAMES = ("legacy-cosine", "legacy-same-line", "legacy-shift", "legacy-rank")


@pytest.fixture
def legacy(monkeypatch):
    monkeypatch.syspath_prepend(str(FOLDER))
    sys.modules.pop("ptrag_legacy_plugin", None)  # fresh classes: each warns once again
    yield importlib.import_module("ptrag_legacy_plugin")
    sys.modules.pop("ptrag_legacy_plugin", None)


def test_a_plugin_written_to_the_old_contract_runs_with_one_warning_per_component(legacy, tmp_path, one_thread):
    manager = build_manager(entry_points=False, extra_plugins=[("legacy", legacy)])
    components = {"retriever": "legacy-cosine", "selector": "legacy-same-line", "generator": "legacy-shift"}
    config = resolve_config(None, preset="ptrag", manager=manager, components=components, sets=[
        "data.synth_preset=tiny", "compare=[]", "device=cpu", "train.steps=4", "train.val_every=2",
        "model.hidden_dim=8", "metrics=[energy, legacy-rank]", f"output.dir={tmp_path / 'run'}"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_experiment(config, manager)
        loaded = load_run(result.run_dir, manager, device="cpu")  # built a second time: no second warning
    legacy_warnings = [str(w.message) for w in caught if issubclass(w.category, LegacyContractWarning)]
    assert sorted(name for name in NAMES for m in legacy_warnings if f"'{name}'" in m) == sorted(NAMES)
    assert len(legacy_warnings) == len(NAMES)
    assert set(result.metrics.metric) == {"energy", "legacy-rank"}
    ranks = result.metrics[result.metrics.metric == "legacy-rank"]
    assert ranks.value.sum() == ranks.context.nunique()  # one best group per cell line: it got the groups
    assert result.uses_retrieval and result.training["steps"] == 4
    kept = result.retrieval["keep_weight"]
    assert set(kept.round(6).unique()) <= {0.0, 1.0} and kept.max() == 1  # the relations reached the selector
    assert loaded.model.generator.capabilities.uses_retrieval and loaded.retriever.capabilities.k == 6
    assert result.retrieval.groupby(["pert", "context"]).size().max() == 6
