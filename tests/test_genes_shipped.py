"""The shipped built-in gene embeddings: present, small, float16, complete, reproducible."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

from ptrag.core.data.gene_modules import GENE_MODULES, NULL_GENES, all_module_genes

SHIPPED = resources.files("ptrag.core.data") / "resources" / "builtin_gene_embeddings.npz"


def _load():
    with SHIPPED.open("rb") as fh, np.load(fh, allow_pickle=False) as z:
        return [str(n) for n in z["names"]], z["embeddings"], json.loads(str(z["provenance"]))


def test_shipped_table_is_small_float16_and_complete():
    assert SHIPPED.is_file()
    with resources.as_file(SHIPPED) as path:
        assert path.stat().st_size < 2_000_000
    names, emb, _ = _load()
    assert emb.dtype == np.float16 and emb.shape == (len(names), 384)
    assert set(all_module_genes()) | set(NULL_GENES) <= set(names)
    norms = np.linalg.norm(emb.astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)


def test_shipped_table_records_how_it_was_made():
    _, _, prov = _load()
    assert prov["command"].startswith("ptrag genes build") and "--genes builtin" in prov["command"]
    assert "--dtype float16" in prov["command"] and prov["dtype"] == "float16"
    assert prov["sources"]["orgdb"]["debian"]["package"] == "r-bioc-org.hs.eg.db"
    assert prov["sources"]["godb"]["debian"]["version"]
    assert prov["sources"]["orgdb"]["metadata"]["EGSOURCEDATE"] and len(prov["sources"]["orgdb"]["sha256"]) == 64
    assert prov["model"]["name"] == "all-MiniLM-L6-v2" and prov["genes"]["not_found"] == []


def test_shipped_table_carries_complex_biology():
    """Ribosomal large-subunit genes sit closer to each other than to olfactory/null genes."""
    names, emb, _ = _load()
    index = {n: i for i, n in enumerate(names)}
    e = emb.astype(np.float32)
    ribo = [index[g] for g in GENE_MODULES["cytosolic_ribosome_large"]]
    null = [index[g] for g in NULL_GENES]
    within = (e[ribo] @ e[ribo].T)[np.triu_indices(len(ribo), 1)].mean()
    across = (e[ribo] @ e[null].T).mean()
    assert within > across + 0.1


HUMAN = resources.files("ptrag.core.data") / "resources" / "human_gene_embeddings.npz"
WELL_KNOWN = ["TP53", "MAPK1", "CCT7", "GAPDH", "ACTB", "MYC", "KRAS", "BRCA1", "EGFR", "POLR2A", "RPL7", "MED14"]


def _human():
    from ptrag.core.data.embeddings import read_gene_embeddings

    with resources.as_file(HUMAN) as path:
        return read_gene_embeddings(path), path.stat().st_size


def test_human_table_is_small_and_covers_the_protein_coding_genes():
    table, size = _human()
    assert size < 6_000_000, f"{size / 1e6:.2f} MB: the shipped human table must stay a few MB"
    assert 19_000 < len(table.names) < 21_000 and table.dim == 384
    assert [g for g in WELL_KNOWN if not table.has(g)] == []
    np.testing.assert_allclose(np.linalg.norm(table.matrix, axis=1), 1.0, atol=1e-4)
    assert len(table.aliases) > 10_000
    # OCT4 names POU5F1 and two pseudogenes in org.Hs.eg.db: an ambiguous alias is never used
    assert table.matched_by_alias(["MLK4", "p53", "OCT4", "HER2"]) == {"MLK4": "MAP3K21", "p53": "TP53",
                                                                       "HER2": "ERBB2"}


def test_human_table_records_its_inputs_command_and_compression():
    prov = _human()[0].provenance
    assert prov["command"].startswith("ptrag genes build --fetch") and "--types protein-coding-only" in prov["command"]
    assert "--compress pca:" in prov["command"] and "--aliases" in prov["command"]
    for key, package in (("orgdb", "r-bioc-org.hs.eg.db"), ("godb", "r-bioc-go.db")):
        source = prov["sources"][key]
        assert source["debian"]["package"] == package and len(source["debian"]["deb_sha256"]) == 64
        assert len(source["sha256"]) == 64 and source["debian"]["version"]
    assert prov["sources"]["orgdb"]["metadata"]["EGSOURCEDATE"] and prov["model"]["name"] == "all-MiniLM-L6-v2"
    assert len(prov["model"]["weights"]["sha256"]) == 64 and prov["genes"]["types"] == "protein-coding-only"
    fid = prov["compression"]["fidelity"]
    assert fid["k"] == 32 and fid["queries"] == 2000
    assert fid["top_k_overlap_mean"] >= 0.9 and fid["spearman_mean"] >= 0.97, fid


def test_human_and_demo_tables_are_one_vector_space():
    """Same model, same texts: a demo gene's vector and its compressed human one nearly coincide,
    and the human table keeps complex biology."""
    human = _human()[0]
    names, demo, _ = _load()
    shared = [n for n in names if human.has(n)]
    assert len(shared) >= len(names) - 1
    index = {n: i for i, n in enumerate(names)}
    cos = (demo.astype(np.float32)[[index[n] for n in shared]] * human.lookup(shared)[0]).sum(1)
    assert cos.min() > 0.9 and cos.mean() > 0.97
    e = human.lookup([*GENE_MODULES["cytosolic_ribosome_large"], *NULL_GENES])[0]
    ribo = len(GENE_MODULES["cytosolic_ribosome_large"])
    within = (e[:ribo] @ e[:ribo].T)[np.triu_indices(ribo, 1)].mean()
    assert within > (e[:ribo] @ e[ribo:].T).mean() + 0.1
