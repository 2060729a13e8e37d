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
