"""One gene, one label (core/data/validation.py): spellings that differ only in case or surrounding
spaces are refused in a screen, matched in split files and across ptrag predict, and a gene is
never retrieved for itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import ptrag
from ptrag.cli.app import app
from ptrag.core.data.database import ResponseDatabase
from ptrag.core.data.split import read_split
from ptrag.core.data.synth import synth_screen
from ptrag.core.data.validation import spelling_variants
from ptrag.core.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return synth_screen("tiny", 0)


def test_spellings_that_differ_in_case_or_spaces_are_grouped():
    labels = pd.Series(["CCT7"] * 3 + ["cct7"] * 2 + [" CCT7 "] + ["AARS"] * 2 + ["aars2"])
    assert spelling_variants(labels) == [[("CCT7", 3), ("cct7", 2), (" CCT7 ", 1)]]


def test_a_screen_with_two_spellings_of_a_gene_is_refused(tiny, tmp_path):
    adata = tiny.copy()
    gene = adata.obs["gene"].astype(str).to_numpy()
    gene[np.flatnonzero(gene == "CCT7")[:5]] = "cct7"
    adata.obs["gene"] = gene.astype(object)
    with pytest.raises(DataError, match=r"obs\['gene'\] spells one gene in 2 ways, 'CCT7' \(\d+ cells\) and 'cct7'"):
        ptrag.run(adata, preset="pert-mean", out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_split_names_match_the_data_whatever_their_case_and_spaces(tiny, tmp_path):
    from ptrag.core.config import DataConfig
    from ptrag.core.data.loading import adata_to_data

    data = adata_to_data(tiny, DataConfig(), "tiny")
    path = tmp_path / "split.yaml"
    path.write_text('fewshot:\n  " RPE1":\n    test: ["cct7 ", "Mcm5"]\n')
    split = read_split(path, data)
    assert sorted(split.test) == [("CCT7", "rpe1"), ("MCM5", "rpe1")] and not split.notes


def test_a_query_spelled_otherwise_never_retrieves_its_own_gene():
    db = ResponseDatabase(perts=["CCT7", "CCT7", "AARS"], contexts=["k562", "rpe1", "rpe1"],
                          n_cells=np.ones(3, np.int64), embeddings=np.eye(3, dtype=np.float32),
                          response=np.zeros((3, 2), np.float32), control_mean={})
    assert db.exclusion_ids("cct7 ", "RPE1", exclude_same_gene=True) == [0, 1]
    assert db.exclusion_ids("cct7", " rpe1", exclude_same_gene=False) == [1]


def test_predict_on_a_screen_spelled_otherwise_than_the_run_retrieves_no_gene_for_itself(tiny, tmp_path):
    run = tmp_path / "nm"
    assert CliRunner().invoke(app, ["run", "--preset", "neighbour-mean", "--set", "data.synth_preset=tiny",
                                    "--out", str(run)]).exit_code == 0
    lower = tiny.copy()
    gene = lower.obs["gene"].astype(str).to_numpy()
    lower.obs["gene"] = np.where(gene == "non-targeting", gene, np.char.lower(gene.astype(str))).astype(object)
    prediction = ptrag.predict(run, lower, out=tmp_path / "p")
    trace = prediction.retrieval
    assert len(trace) and not (trace["pert"].str.upper() == trace["candidate_pert"].str.upper()).any()
