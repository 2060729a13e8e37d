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
    assert "1 matched through an alias or renamed symbol (SEPTIN7 -> SEPT7)" in \
        table.coverage_message(["SEPTIN7"], "drop")


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


def _builtin_perts():
    from ptrag.core.data.gene_modules import NULL_GENES, all_module_genes

    return sorted({*all_module_genes(), *NULL_GENES})


def test_auto_keeps_the_demo_table_and_its_exact_vectors_for_the_builtin_screen():
    perts = _builtin_perts()
    table = load_gene_embeddings(None, perts)
    assert table.label == "builtin:demo" and table.chosen is None and table.source == str(BUILTIN_EMBEDDINGS)
    assert load_gene_embeddings("auto", perts) is table and load_gene_embeddings("builtin:demo", perts) is table
    with np.load(BUILTIN_EMBEDDINGS) as z:
        row = {str(n): i for i, n in enumerate(z["names"])}
        stored = z["embeddings"].astype(np.float32)[[row[p] for p in perts]]
    np.testing.assert_array_equal(table.lookup(perts, policy="error")[0], stored)


def test_auto_takes_the_human_table_for_a_screen_of_real_symbols():
    from ptrag.core.data.coverage import apply_embedding_policy
    from ptrag.core.data.split import Split

    genes = ["TP53", "MAPK1", "GAPDH", "CCT7", "MLK4", "MT-ND6", "A+B", "NOT_A_GENE"]
    demo = load_gene_embeddings("builtin:demo", genes)
    table = load_gene_embeddings(None, genes)
    human = sum(table.has(g) for g in genes)
    assert table.label == "builtin:human" and table.source.endswith("human_gene_embeddings.npz") and table.dim == 384
    assert human == 6 and sum(demo.has(g) for g in genes) < human
    assert f"builtin:demo covers {sum(demo.has(g) for g in genes)} of 8 perturbed genes, builtin:human 6" in \
        table.chosen
    assert table.matched_by_alias(genes) == {"MLK4": "MAP3K21", "MT-ND6": "ND6"}  # annotation aliases, reported
    assert "2 matched through an alias or renamed symbol (MLK4 -> MAP3K21, MT-ND6 -> ND6)" in \
        table.coverage_message(genes, "drop")
    assert load_gene_embeddings("builtin:human", genes).chosen is None  # named, not chosen
    logged = []
    split = Split(train=[], test=[(g, "k562") for g in genes], description="real symbols")
    _, vectors = apply_embedding_policy(split, table, genes, policy="zero", max_dropped_test=1, users=["linear"],
                                        log=logged.append)
    assert any("using builtin:human" in line for line in logged)
    assert any("MLK4 -> MAP3K21" in line for line in logged)  # never a silent alias match
    assert any("2 of 8 perturbed gene(s) have no embedding" in line and "A+B, NOT_A_GENE" in line for line in logged)
    np.testing.assert_array_equal(vectors["MLK4"], table.lookup(["MAP3K21"])[0][0])


def test_builtin_names_and_files_resolve_as_named(tmp_path):
    from ptrag.core.errors import ConfigError

    with pytest.raises(ConfigError, match="'builtin:mouse': no such built-in table; use builtin:demo, builtin:human"):
        load_gene_embeddings("builtin:mouse", ["TP53"])
    path = tmp_path / "auto.npz"  # a file keeps meaning that file, whatever its name
    np.savez(path, names=np.asarray(["TP53"]), embeddings=np.ones((1, 3), dtype=np.float32))
    assert load_gene_embeddings(str(path), ["TP53"]).dim == 3


def test_inspect_names_the_table_auto_chose_and_the_aliases(tmp_path):
    from typer.testing import CliRunner

    from ptrag.cli.app import app
    from ptrag.core.data.synth import synth_screen

    screen = synth_screen("tiny", seed=0)
    genes = screen.obs["gene"].astype(str)
    first, second = sorted(set(genes) - {"non-targeting"})[:2]
    screen.obs["gene"] = genes.replace({first: "MLK4", second: "ZZNOTAGENE"}).astype("category")
    h5 = tmp_path / "real_symbols.h5ad"
    screen.write_h5ad(h5)
    r = CliRunner().invoke(app, ["data", "inspect", str(h5)])
    assert r.exit_code == 0, r.output
    assert "gene embeddings: builtin:human (" in r.output and "29/30 perturbed genes covered" in r.output
    assert "data.gene_embeddings=auto: builtin:demo covers 28 of 30 perturbed genes, builtin:human 29" in r.output
    assert "MLK4 -> MAP3K21" in r.output and "ZZNOTAGENE" in r.output
