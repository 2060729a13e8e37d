"""Modality and combinations: evidence is pooled only between lines of one modality (CRISPRa never
stands in for CRISPRi), a line mixing modalities is refused, and `A+B` labels are left out with a
note instead of being read as a gene."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.config import DataConfig
from ptrag.core.data.loading import load_screen
from ptrag.core.data.synth import synth_screen

pytestmark = pytest.mark.usefixtures("one_thread")


def _screen(tmp_path, name="screen.h5ad", edit=None):
    adata = synth_screen("tiny", 0)
    adata.obs["perturbation_type"] = adata.obs.cell_line.map({"k562": "CRISPRi", "rpe1": "CRISPRa"}).astype(str)
    if edit:
        adata = edit(adata)
    path = tmp_path / name
    adata.write_h5ad(path)
    return path


def _run(path, out, preset, *sets):
    result = CliRunner().invoke(app, ["run", "--preset", preset, "--data", str(path), "--device", "cpu", "--set",
                                      "data.holdout_context=rpe1", "--set", "compare=[]",
                                      *sum((["--set", s] for s in sets), []), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return pd.read_csv(out / "metrics.csv").set_index(["pert", "context", "metric"]).value


def test_gene_other_lines_pools_only_lines_of_the_querys_modality(tmp_path):
    path = _screen(tmp_path)
    pooled = _run(path, tmp_path / "pooled", "gene-other-lines")
    apart = _run(path, tmp_path / "apart", "gene-other-lines", "data.modality_col=perturbation_type")
    line_mean = _run(path, tmp_path / "mean", "pert-mean", "data.modality_col=perturbation_type")
    # rpe1 (CRISPRa) has no other line of its modality: its evidence is its own line's mean response
    pd.testing.assert_series_equal(apart, line_mean)
    assert not apart.equals(pooled)


def test_retrieval_never_returns_another_modalitys_entries(tmp_path):
    path = _screen(tmp_path)
    out = tmp_path / "nm"
    _run(path, out, "neighbour-mean", "data.modality_col=perturbation_type", "model.exclude_same_gene=false")
    trace = pd.read_csv(out / "retrieval.csv")
    assert len(trace) and set(trace.candidate_context) == {"rpe1"}  # k562 is CRISPRi, the queries CRISPRa


def test_a_line_mixing_modalities_is_refused_in_one_line(tmp_path):
    def mix(adata):
        adata.obs.loc[adata.obs.index[(adata.obs.cell_line == "k562").to_numpy()][:40], "perturbation_type"] = "CRISPRa"
        return adata

    path = _screen(tmp_path, edit=mix)
    result = CliRunner().invoke(app, ["data", "inspect", str(path), "--modality-col", "perturbation_type"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cell line k562 mixes modalities CRISPRa, CRISPRi in obs['perturbation_type']" in \
        " ".join(result.output.split())


def test_combinations_are_left_out_with_a_note_never_read_as_a_gene(tmp_path):
    def pair(adata):
        adata.obs["gene"] = adata.obs.gene.astype(str)
        adata.obs.loc[adata.obs.gene == "CCT7", "gene"] = "CCT7+CCT2"
        return adata

    path = _screen(tmp_path, edit=pair)
    data = load_screen(DataConfig(path=str(path)))
    assert "CCT7+CCT2" not in data.perturbations and "CCT2" in data.perturbations
    assert any("left out 1 combinatorial perturbation(s)" in n and "CCT7+CCT2" in n for n in data.notes)
    assert data.info["combination_groups"] == 1
    as_given = load_screen(DataConfig(path=str(path), combination_sep=None))
    assert "CCT7+CCT2" in as_given.perturbations
