"""Retriever back-ends beyond the shared contract: parameters, exclusion widening, the per-group
precompute of stage-1 neighbours (ptrag.core.model.neighbours), persistence in a run folder, and
`ptrag run --retriever`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.data.database import ResponseDatabase
from ptrag.core.errors import DataError
from ptrag.core.hookspecs import BuildContext
from ptrag.core.model.neighbours import exclusion_lists, precompute_neighbours
from ptrag.core.retrieval import normalise_exclude, search_with_exclusion
from ptrag.core.testing import clustered_keys, reference_search


def make(name: str, **params):
    spec = build_manager(entry_points=False).get("retriever", name)
    return spec.build(spec.params_model(**params), BuildContext(seed=0))


def small_db() -> ResponseDatabase:
    genes = ["A", "B", "C", "D", "E"]
    perts = [g for g in genes for _ in ("k562", "rpe1")]
    contexts = [c for _ in genes for c in ("k562", "rpe1")]
    emb = clustered_keys(10, 8, clusters=2, seed=0)
    emb[1] = emb[0] * 4.0  # the same gene in two cell lines: identical direction
    return ResponseDatabase(perts, contexts, np.full(10, 20), emb, np.zeros((10, 3), np.float32), {})


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("name,bad", [
    ("faiss", {"index": "annoy"}), ("faiss", {"ef_search": 0}), ("faiss", {"nlist": 0}),
    ("faiss", {"efSearch": 64}), ("hnsw", {"M": 1}), ("hnsw", {"ef": 0}), ("exact", {"device": "gpu9"}),
    ("exact", {"k": -1}), ("random", {"colour": 1}),
])
def test_bad_parameters_are_rejected(name, bad):
    spec = build_manager(entry_points=False).get("retriever", name)
    with pytest.raises(ValidationError):
        spec.params_model(**bad)


@pytest.mark.parametrize("name", ["exact", "faiss", "hnsw", "random"])
def test_every_retriever_defaults_to_k32(name):
    assert build_manager(entry_points=False).get("retriever", name).params_model().k == 32


def test_bad_input_is_a_one_line_data_error():
    r = make("exact")
    r.build(np.ones((4, 3), np.float32))
    with pytest.raises(DataError, match="dimension 5"):
        r.search(np.ones((1, 5), np.float32), 2)
    with pytest.raises(DataError, match="NaN"):
        r.search(np.array([[1.0, np.nan, 0.0]], np.float32), 2)
    with pytest.raises(DataError, match="exclude\\[0\\] lists id 9"):
        r.search(np.ones((1, 3), np.float32), 2, [[9]])
    with pytest.raises(DataError, match="2 lists for 1 queries"):
        r.search(np.ones((1, 3), np.float32), 2, [[0], [1]])
    # -1 ("no own entry") is ignored
    assert normalise_exclude([[-1, 2, 2]], 1, 4)[0].tolist() == [2]


# --------------------------------------------------------------------------- behaviour


def test_exact_ties_lower_id_first_across_the_cut():
    keys = np.zeros((50, 4), np.float32)
    keys[:, 0] = 1.0  # fifty identical keys: every cosine ties
    r = make("exact")
    r.build(keys)
    res = r.search(np.array([[2.0, 0, 0, 0], [0, 0, 0, 0]], np.float32), 5, [[0, 3], []])
    assert res.ids.tolist() == [[1, 2, 4, 5, 6], [0, 1, 2, 3, 4]]


def test_widening_finds_candidates_an_index_misses_at_first():
    keys = clustered_keys(100, 8, seed=1)
    calls = []
    lossy = [0]

    def raw(q, fetch):  # an index that loses its last `lossy` results, as approximate ones may
        calls.append(fetch)
        s, i = reference_search(keys, q, fetch)
        if lossy[0]:
            s[:, fetch - lossy[0]:], i[:, fetch - lossy[0]:] = -np.inf, -1
        return s.astype(np.float32), i

    nearest = reference_search(keys, keys[:1], 100)[1][0]
    far = nearest[-10:].tolist()
    res = search_with_exclusion(raw, keys[:1], 5, normalise_exclude([far], 1, 100), 100)
    assert calls == [16] and res.ids[0].tolist() == nearest[:5].tolist()  # k + 10 + 1: no widening
    calls.clear()
    lossy[0] = 20
    excl = normalise_exclude([nearest[:40].tolist()], 1, 100)
    res = search_with_exclusion(raw, keys[:1], 25, excl, 100)
    assert calls == [66, 100]  # 46 returned, 40 excluded: short -> widened
    assert res.ids[0].tolist() == nearest[40:65].tolist()


def test_faiss_ivf_clamps_nlist_on_a_small_database_and_hnsw_is_seeded():
    keys = clustered_keys(400, 16, seed=2)
    r = make("faiss", index="ivf", nlist=4096, nprobe=64)
    r.build(keys)
    assert r.nlist == 400 // 39 and not r.capabilities.exact
    a, b = make("hnsw"), make("hnsw")
    a.build(keys), b.build(keys)
    assert torch.equal(a.search(keys[:50], 10).ids, b.search(keys[:50], 10).ids)


def test_random_is_seeded_uniform_and_respects_exclusion():
    keys = clustered_keys(40, 6, seed=3)
    a, b = make("random", seed=7), make("random", seed=7)
    a.build(keys), b.build(keys)
    ra, rb = a.search(keys[:40], 5, [[0, 1]] * 40), b.search(keys[:40], 5, [[0, 1]] * 40)
    assert torch.equal(ra.ids, rb.ids)
    assert not np.isin(ra.ids.numpy(), [0, 1]).any()
    counts = np.bincount(ra.ids.numpy().ravel(), minlength=40)[2:]
    assert counts.min() >= 1 and counts.max() <= 20  # 200 draws over 38 ids: roughly uniform
    assert not torch.equal(a.search(keys[:40], 5).ids, ra.ids)  # each call draws anew


# --------------------------------------------------------------------------- epoch precompute


def test_exclusion_lists_own_entry_and_same_gene():
    db = small_db()
    queries = [("A", "rpe1"), ("C", "k562"), ("Z", "rpe1")]
    own = exclusion_lists(db, queries, exclude_same_gene=False)
    gene = exclusion_lists(db, queries, exclude_same_gene=True)
    assert own == [[1], [4], []] and gene == [[0, 1], [4, 5], []]


def test_precompute_neighbours_excludes_and_matches_a_direct_search():
    db = small_db()
    r = make("exact")
    r.build(db.embeddings)
    queries = [("A", "rpe1"), ("B", "k562")]
    q = db.embeddings[[1, 2]]
    own = precompute_neighbours(r, db, queries, q, 3, exclude_same_gene=False)
    gene = precompute_neighbours(r, db, queries, q, 3, exclude_same_gene=True)
    assert own.ids[0, 0].item() == 0  # the same gene in the other cell line is the nearest
    assert 0 not in gene.ids[0].tolist() and 1 not in gene.ids[0].tolist()
    assert 1 not in own.ids[0].tolist() and 2 not in own.ids[1].tolist()
    assert torch.equal(gene.ids, r.search(q, 3, [[0, 1], [2, 3]]).ids)
    other = make("exact")
    other.build(db.embeddings[:5])
    with pytest.raises(DataError, match="rebuild the retriever"):
        precompute_neighbours(other, db, queries, q, 3, False)


# --------------------------------------------------------------------------- the CLI


runner = CliRunner()


@pytest.mark.parametrize("name", ["exact", "faiss", "hnsw", "random", "none"])
def test_ptrag_run_with_each_retriever(tmp_path, name):
    out = tmp_path / name
    result = runner.invoke(app, ["run", "--preset", "pert-mean", "--set", "data.synth_preset=tiny",
                                 "--retriever", name, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)
    for file in ("config.yaml", "metrics.csv", "metrics.json", "retriever/retriever.json"):
        assert (out / file).is_file(), file
    assert json.loads((out / "metrics.json").read_text())["run"]["components"]["retriever"] == name
    assert len(pd.read_csv(out / "metrics.csv")) > 0
    # prediction reuses exactly the saved index
    spec = build_manager(entry_points=False).get("retriever", name)
    built = spec.build(spec.params_model(), BuildContext())
    loaded = type(built).load(out / "retriever")
    assert len(loaded) > 0
    if name != "none":
        res = loaded.search(np.ones((2, loaded_dim(out, loaded)), np.float32), 3, [[0], [1]])
        assert tuple(res.ids.shape) == (2, 3) and (res.ids >= 0).all()


def loaded_dim(out, retriever) -> int:
    info = json.loads((out / "retriever" / "retriever.json").read_text())
    if "dim" in info:
        return int(info["dim"])
    return int(np.load(out / "retriever" / "keys.npy").shape[1])
