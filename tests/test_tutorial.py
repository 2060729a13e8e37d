"""docs/tutorial.py runs end to end, as a reader runs it, on the tiny built-in screen."""

import runpy
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.py"


@pytest.mark.usefixtures("one_thread")
def test_the_tutorial_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PTRAG_TUTORIAL_DATA", "tiny")
    monkeypatch.setenv("PTRAG_TUTORIAL_STEPS", "6")
    monkeypatch.setenv("PTRAG_TUTORIAL_OUT", str(tmp_path / "out"))
    monkeypatch.chdir(tmp_path)
    done = runpy.run_path(str(TUTORIAL), run_name="__main__")

    runs = done["runs"]
    assert [r.config.preset for r in runs.values()] == ["state", "ptrag-evidence"]
    assert all(r.training["steps"] == 6 and (r.run_dir / "metrics.json").is_file() for r in runs.values())
    assert all(r.run_dir.parent == tmp_path / "out" for r in runs.values())
    # the paired test covers every metric over the perturbations both runs held out
    paired = done["paired"]
    assert set(paired.metric) == set(runs["state"].summary)
    assert (paired.n == runs["state"].metrics.drop_duplicates(["pert", "context"]).shape[0]).all()
    assert paired.wilcoxon_p.between(0, 1).all()
    figure = done["figure"]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    # the new AnnData holds only knock-downs the models never saw
    prediction, unseen = done["prediction"], set(done["unseen"])
    assert prediction.groups and {p for p, _ in prediction.groups} == unseen
    assert unseen.isdisjoint(done["screen"].obs["gene"])
    assert isinstance(prediction.predictions, ad.AnnData) and prediction.folder is None
    assert isinstance(done["scores"].aggregates, pd.DataFrame)
    assert list(done["scores"].aggregates.index) == ["energy", "pearson-delta", "mse"]
    assert "predicted" in capsys.readouterr().out
