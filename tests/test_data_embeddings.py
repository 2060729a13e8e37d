"""Gene-embedding readers (GenePT pickle, npz with provenance, csv, parquet) and the policies."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from ptrag.core.data.embeddings import (
    BUILTIN_EMBEDDINGS,
    GeneEmbeddings,
    default_embeddings,
    load_gene_embeddings,
    read_gene_embeddings,
)
from ptrag.core.errors import DataError

NAMES = ["POLR2A", "Med1", "SEPT7", "TP53"]
M = np.arange(12, dtype=np.float32).reshape(4, 3)


def _check(table):
    assert table.dim == 3 and table.names == NAMES
    vec, missing = table.lookup(["MED1", "polr2a", "NOPE"], policy="zero")
    np.testing.assert_array_equal(vec[0], M[1])  # case-insensitive
    np.testing.assert_array_equal(vec[1], M[0])
    assert missing == ["NOPE"] and not vec[2].any()


def test_genept_pickle(tmp_path):
    path = tmp_path / "genept.pickle"
    path.write_bytes(pickle.dumps({n: list(map(float, r)) for n, r in zip(NAMES, M, strict=False)}))
    _check(read_gene_embeddings(path))


def test_npz_with_provenance(tmp_path):
    path = tmp_path / "t.npz"
    np.savez_compressed(path, names=np.asarray(NAMES, dtype=str), embeddings=M.astype(np.float16),
                        provenance=np.asarray(json.dumps({"model": "x"})))
    table = read_gene_embeddings(path)
    _check(table)
    assert table.provenance == {"model": "x"}


@pytest.mark.parametrize("header", [True, False])
def test_csv_with_or_without_header(tmp_path, header):
    path = tmp_path / "t.csv"
    df = pd.DataFrame(M, index=pd.Index(NAMES, name="gene"), columns=["e0", "e1", "e2"])
    df.to_csv(path, header=header)
    _check(read_gene_embeddings(path))


@pytest.mark.parametrize("in_index", [True, False])
def test_parquet_index_or_first_column(tmp_path, in_index):
    path = tmp_path / "t.parquet"
    df = pd.DataFrame(M, index=NAMES, columns=["e0", "e1", "e2"])
    (df if in_index else df.reset_index(names="symbol")).to_parquet(path)
    _check(read_gene_embeddings(path))


def test_alias_step_matches_renamed_symbols():
    table = GeneEmbeddings(NAMES, M)
    vec, missing = table.lookup(["SEPTIN7"], policy="error")
    np.testing.assert_array_equal(vec[0], M[2])
    assert table.aliased(["SEPTIN7", "TP53"]) == ["SEPTIN7"]
    assert "1 matched through renamed symbols (first: SEPTIN7)" in table.coverage_message(["SEPTIN7"], "drop")


def test_error_policy_reports_count_and_first_names():
    table = GeneEmbeddings(NAMES, M, source="tab.npz")
    with pytest.raises(DataError, match=r"tab.npz: 2 perturbed gene\(s\) have no embedding \(first: X1, X2\)"):
        table.lookup(["TP53", "X1", "X2"], policy="error")
    assert "2 of 3 perturbed gene(s) have no embedding (first: X1, X2); policy drop" in \
        table.coverage_message(["TP53", "X1", "X2"], "drop")


def test_bad_files_give_one_line(tmp_path):
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(DataError, match="unknown gene-embedding format"):
        read_gene_embeddings(tmp_path / "t.json")
    np.savez(tmp_path / "bad.npz", genes=np.array(["A"]))
    with pytest.raises(DataError, match="needs arrays 'names' and 'embeddings'; it has genes"):
        read_gene_embeddings(tmp_path / "bad.npz")
    np.savez(tmp_path / "nan.npz", names=np.array(["A", "B"]), embeddings=np.array([[1.0], [np.nan]]))
    with pytest.raises(DataError, match=r"1 embedding\(s\) contain NaN/inf \(first: B\)"):
        read_gene_embeddings(tmp_path / "nan.npz")
    with pytest.raises(DataError, match="not found"):
        read_gene_embeddings(tmp_path / "none.npz")


def test_default_is_the_packaged_table_or_a_labelled_stand_in():
    table = load_gene_embeddings(None, ["POLR2A"])
    if BUILTIN_EMBEDDINGS.is_file():
        assert table.source.endswith("builtin_gene_embeddings.npz") and table.has("POLR2A")
    else:
        assert "random stand-in" in table.source
    assert default_embeddings(["POLR2A"]).dim == table.dim
