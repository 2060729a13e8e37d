"""The retriever contract suite (``ptrag.core.testing``).

Third-party packages test their retriever the way ptrag tests its own, either with the plain
function::

    from ptrag.core.testing import check_retriever

    def test_my_retriever(tmp_path):
        check_retriever(lambda: MyRetriever(), tmp_path)            # approximate: min_recall=0.95

or by subclassing the pytest-style base class (pytest resolves the fixtures by name)::

    import pytest
    from ptrag.core.testing import RetrieverContract

    class TestMyRetriever(RetrieverContract):
        min_recall = 0.95                       # None for retrievers that do not rank (random)

        @pytest.fixture
        def make_retriever(self):
            return lambda: MyRetriever()

Each check builds fresh retrievers with ``make()`` and raises AssertionError naming what broke.
Exact back-ends (``capabilities.exact``) must match brute-force cosine top-k exactly, ties ordered
by lower id first, and give identical results on every call; approximate ones must reach
``min_recall`` against it on a small clustered set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import PtragError
from ..interfaces import RetrievalResult, Retriever

MakeRetriever = Callable[[], Retriever]
Features = Callable[[np.ndarray], np.ndarray]

__all__ = [
    "MakeRetriever",
    "clustered_keys",
    "reference_search",
    "check_result",
    "check_cosine_semantics",
    "check_exclusion",
    "check_k_larger_than_database",
    "check_empty_database",
    "check_duplicate_keys",
    "check_zero_vectors",
    "check_determinism",
    "check_save_load",
    "check_recall",
    "check_retriever",
    "RetrieverContract",
]

SCORE_TOL = 2e-3  # float32 back-ends (hnswlib returns 1 - cos in float32)


# --------------------------------------------------------------------------- data and reference


def clustered_keys(n: int = 2000, dim: int = 32, clusters: int = 20, spread: float = 0.35,
                   seed: int = 0) -> np.ndarray:
    """Unnormalised keys around ``clusters`` random centres, with random norms (0.1 to 10)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim))
    return (x * rng.uniform(0.1, 10.0, (n, 1))).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def reference_search(keys: np.ndarray, queries: np.ndarray, k: int,
                     exclude: Sequence[Sequence[int]] | None = None,
                     features: Features = _identity) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force cosine top-k in float64: (scores [Q,k] -inf padded, ids [Q,k] -1 padded),
    ordered by score descending, lower id first on ties. ``features`` maps vectors first
    (a retriever's ``similarity_features``)."""
    sims = _unit(features(queries)) @ _unit(features(keys)).T
    for row, ids in enumerate(exclude or []):
        ids = [i for i in ids if i >= 0]
        sims[row, ids] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(len(keys)), sims.shape), -sims), axis=-1)[:, :k]
    scores = np.take_along_axis(sims, order, axis=1)
    ids = np.where(np.isfinite(scores), order, -1)
    pad = k - ids.shape[1]
    if pad > 0:
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    return scores, ids


def _np(result: RetrievalResult) -> tuple[np.ndarray, np.ndarray]:
    return (result.scores.detach().cpu().numpy().astype(np.float64),
            result.ids.detach().cpu().numpy().astype(np.int64))


def _built(make: MakeRetriever, keys: np.ndarray) -> Retriever:
    retriever = make()
    assert isinstance(retriever, Retriever), f"make() returned {type(retriever).__name__}, not a Retriever"
    retriever.build(keys, None)
    assert len(retriever) == len(keys), f"len(retriever) is {len(retriever)} after building {len(keys)} keys"
    return retriever


def _exact(retriever: Retriever) -> bool:
    """Declared exactness (``exact`` as a class attribute: ptrag 0.1's way)."""
    if retriever.capabilities is Retriever.capabilities:
        return bool(getattr(retriever, "exact", True))
    return retriever.capabilities.exact


def _label(retriever: Retriever) -> str:
    return getattr(retriever, "name", "") or type(retriever).__name__


# --------------------------------------------------------------------------- checks


def check_result(result: RetrievalResult, keys: np.ndarray, queries: np.ndarray, k: int,
                 exclude: Sequence[Sequence[int]] | None = None, label: str = "retriever",
                 features: Features = _identity) -> None:
    """Shape, dtypes, padding, distinct ids, no excluded id, scores = true cosine, rows sorted."""
    assert isinstance(result, RetrievalResult), f"{label}: search must return a RetrievalResult"
    assert isinstance(result.scores, torch.Tensor) and isinstance(result.ids, torch.Tensor), \
        f"{label}: scores and ids must be torch tensors"
    assert result.scores.dtype == torch.float32, f"{label}: scores dtype {result.scores.dtype}, expected float32"
    assert result.ids.dtype == torch.int64, f"{label}: ids dtype {result.ids.dtype}, expected int64"
    q = len(queries)
    assert tuple(result.scores.shape) == (q, k) and tuple(result.ids.shape) == (q, k), \
        f"{label}: result shape {tuple(result.ids.shape)}, expected {(q, k)} (pad missing columns with -1)"
    scores, ids = _np(result)
    valid = ids >= 0
    assert ((ids >= -1) & (ids < len(keys))).all(), f"{label}: ids outside [-1, N)"
    assert not np.isnan(scores).any(), f"{label}: NaN scores"
    assert np.isneginf(scores[~valid]).all(), f"{label}: padding (id -1) must have score -inf"
    assert np.isfinite(scores[valid]).all(), f"{label}: a real candidate has a non-finite score"
    assert (np.diff(valid.astype(int), axis=1) <= 0).all(), f"{label}: padding must come after the candidates"
    true = (_unit(features(queries))[:, None, :] * _unit(features(keys))[np.maximum(ids, 0)]).sum(-1)
    err = np.abs(np.where(valid, scores - true, 0.0)).max(initial=0.0)
    assert err < SCORE_TOL, f"{label}: scores differ from the cosine of the returned ids by {err:.2g}"
    both = valid[:, 1:] & valid[:, :-1]
    assert (np.where(both, np.diff(np.where(valid, scores, 0.0), axis=1), 0.0) <= SCORE_TOL).all(), \
        f"{label}: each row must be ordered by score, highest first"
    for row in range(q):
        got = ids[row][valid[row]]
        assert len(set(got.tolist())) == len(got), f"{label}: query {row} got the same id twice"
        if exclude is not None:
            bad = set(got.tolist()) & {int(i) for i in exclude[row]}
            assert not bad, f"{label}: query {row} got excluded id(s) {sorted(bad)}"


def _expect_exact(result: RetrievalResult, keys: np.ndarray, queries: np.ndarray, k: int,
                  exclude: Sequence[Sequence[int]] | None, label: str,
                  features: Features = _identity) -> None:
    ref_s, ref_i = reference_search(keys, queries, k, exclude, features)
    scores, ids = _np(result)
    # the same ids, except where float rounding swaps two near-equal scores
    differs = ids != ref_i
    if differs.any():
        close = np.abs(np.where(differs, scores - ref_s, 0.0)) < 1e-5
        assert close.all(), (f"{label}: exact back-end disagrees with brute-force cosine top-k at "
                             f"{int((~close).sum())} position(s)")


def check_cosine_semantics(make: MakeRetriever, *, seed: int = 0, k: int = 5) -> None:
    """Unnormalised keys and queries: cosine, not dot product; query scale does not matter."""
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(60, 8)).astype(np.float32)
    keys *= rng.uniform(0.01, 100.0, (60, 1)).astype(np.float32)
    queries = rng.normal(size=(6, 8)).astype(np.float32)
    retriever = _built(make, keys)
    label = _label(retriever)
    result = retriever.search(queries, k)
    check_result(result, keys, queries, k, None, label, retriever.similarity_features)
    if _exact(retriever):
        _expect_exact(result, keys, queries, k, None, label, retriever.similarity_features)
        scaled = retriever.search(queries * 37.5, k)
        assert torch.equal(scaled.ids, result.ids), f"{label}: scaling the queries changed the ids"
    # a big-norm key pointing away from a query must not beat a small-norm key pointing at it
    keys2 = np.stack([np.array([1.0, 0.0], np.float32) * 0.01, np.array([1.0, 1.0], np.float32) * 1000.0,
                      np.array([-1.0, 0.2], np.float32) * 50.0])
    r2 = _built(make, keys2)
    res = r2.search(np.array([[3.0, 0.0]], np.float32), 3)
    check_result(res, keys2, np.array([[3.0, 0.0]], np.float32), 3, None, label, retriever.similarity_features)
    if _exact(r2):
        assert res.ids[0].tolist() == [0, 1, 2], f"{label}: not cosine order: {res.ids[0].tolist()}"


def check_exclusion(make: MakeRetriever, *, seed: int = 1, k: int = 6) -> None:
    """The query's own entry, a whole gene's entries, and a row that leaves fewer than k."""
    keys = clustered_keys(120, 12, clusters=6, seed=seed)
    retriever = _built(make, keys)
    label = _label(retriever)
    queries = keys[:8]
    own = [[i] for i in range(8)]
    res = retriever.search(queries, k, own)
    check_result(res, keys, queries, k, own, label, retriever.similarity_features)
    assert (res.ids >= 0).all(), f"{label}: rows are short although enough entries remain"
    if _exact(retriever):
        _expect_exact(res, keys, queries, k, own, label, retriever.similarity_features)
    # "a gene in several cell lines": every entry of the query's gene is excluded
    nearest = reference_search(keys, queries, 10, None, retriever.similarity_features)[1]
    gene = [sorted(set(nearest[i][:10].tolist()) | {i}) for i in range(8)]
    res = retriever.search(queries, k, gene)
    check_result(res, keys, queries, k, gene, label, retriever.similarity_features)
    assert (res.ids >= 0).all(), f"{label}: rows are short after excluding one gene's entries"
    if _exact(retriever):
        _expect_exact(res, keys, queries, k, gene, label, retriever.similarity_features)
    # exclude all but 3 entries: 3 candidates, then padding
    keep = [5, 50, 99]
    almost = [[i for i in range(len(keys)) if i not in keep]]
    res = retriever.search(keys[:1], k, almost)
    check_result(res, keys, keys[:1], k, almost, label, retriever.similarity_features)
    assert sorted(res.ids[0, :3].tolist()) == keep and (res.ids[0, 3:] == -1).all(), \
        f"{label}: with 3 entries left expected ids {keep} then -1 padding, got {res.ids[0].tolist()}"
    # exclude=None and empty lists behave the same
    a, b = retriever.search(queries, k, None), retriever.search(queries, k, [[] for _ in range(8)])
    check_result(a, keys, queries, k, None, label, retriever.similarity_features)
    if _exact(retriever):
        assert torch.equal(a.ids, b.ids), f"{label}: exclude=None and empty lists differ"


def check_k_larger_than_database(make: MakeRetriever) -> None:
    """K > N clamps: all N entries (minus exclusions) then -1 / -inf padding; k=0 is empty."""
    keys = clustered_keys(10, 6, clusters=2, seed=2)
    retriever = _built(make, keys)
    label = _label(retriever)
    res = retriever.search(keys[:3], 15, [[0], [1], []])
    check_result(res, keys, keys[:3], 15, [[0], [1], []], label, retriever.similarity_features)
    n_valid = (res.ids >= 0).sum(1).tolist()
    assert n_valid == [9, 9, 10], f"{label}: with K > N expected 9, 9, 10 candidates, got {n_valid}"
    zero = retriever.search(keys[:3], 0)
    assert tuple(zero.ids.shape) == (3, 0), f"{label}: k=0 must give [Q, 0], got {tuple(zero.ids.shape)}"


def check_empty_database(make: MakeRetriever) -> None:
    """Building on 0 keys (or searching it) raises a clear one-line error, not a crash deep inside."""
    retriever = make()
    label = _label(retriever)
    try:
        retriever.build(np.zeros((0, 8), np.float32), None)
        retriever.search(np.ones((2, 8), np.float32), 3)
    except (PtragError, ValueError) as exc:
        message = str(exc)
        assert message and "\n" not in message.strip(), f"{label}: empty-database error is not one line: {message!r}"
        assert "empty" in message.lower() or "0 " in message, \
            f"{label}: empty-database error should say the database is empty: {message!r}"
        return
    raise AssertionError(f"{label}: an empty database must raise a clear error (PtragError or ValueError)")


def check_duplicate_keys(make: MakeRetriever, *, ranked: bool = True) -> None:
    """Identical keys (one gene in several cell lines) are all retrievable, lower id first.

    ``ranked=False`` (random ablations): every copy is among the candidates when k = N.
    """
    keys = clustered_keys(80, 10, clusters=4, seed=3)
    keys[[17, 42, 63]] = keys[5]
    retriever = _built(make, keys)
    label = _label(retriever)
    if not ranked:
        res = retriever.search(keys[5:6], len(keys), [[5]])
        check_result(res, keys, keys[5:6], len(keys), [[5]], label, retriever.similarity_features)
        got = set(res.ids[0].tolist())
        assert {17, 42, 63} <= got, f"{label}: duplicate keys must all be retrievable"
        return
    res = retriever.search(keys[5:6] * 3.0, 4)
    check_result(res, keys, keys[5:6] * 3.0, 4, None, label, retriever.similarity_features)
    top = res.ids[0, :4].tolist()
    if _exact(retriever):
        assert top == [5, 17, 42, 63], f"{label}: duplicates must come lower id first, got {top}"
    else:
        assert sorted(top) == [5, 17, 42, 63], f"{label}: duplicate keys not all retrieved: {top}"
    res = retriever.search(keys[5:6], 3, [[5]])
    top = res.ids[0].tolist()
    if _exact(retriever):
        assert top == [17, 42, 63], f"{label}: with the own entry excluded expected [17, 42, 63], got {top}"
    else:
        assert sorted(top) == [17, 42, 63], f"{label}: the other copies must stay retrievable, got {top}"


def check_zero_vectors(make: MakeRetriever) -> None:
    """Zero keys / queries: cosine 0 (never NaN)."""
    keys = clustered_keys(30, 6, clusters=3, seed=4)
    keys[[3, 9]] = 0.0
    retriever = _built(make, keys)
    label = _label(retriever)
    queries = np.vstack([np.zeros((1, 6), np.float32), keys[:2]])
    res = retriever.search(queries, 30)
    check_result(res, keys, queries, 30, None, label, retriever.similarity_features)
    scores, ids = _np(res)
    assert np.allclose(scores[0][ids[0] >= 0], 0.0, atol=SCORE_TOL), f"{label}: a zero query must score 0"


def check_determinism(make: MakeRetriever) -> None:
    """Exact back-ends: identical results on repeated calls and on a rebuilt index."""
    keys = clustered_keys(300, 16, clusters=8, seed=5)
    keys[[10, 20]] = keys[0]
    queries = keys[:40] * 2.0
    exclude = [[i] for i in range(40)]
    a = _built(make, keys)
    label = _label(a)
    r1, r2 = a.search(queries, 12, exclude), a.search(queries, 12, exclude)
    r3 = _built(make, keys).search(queries, 12, exclude)
    for other, what in ((r2, "a second call"), (r3, "a rebuilt index")):
        assert torch.equal(r1.ids, other.ids) and torch.equal(r1.scores, other.scores), \
            f"{label}: exact back-end gave different results on {what}"


def check_save_load(make: MakeRetriever, directory: str | Path) -> None:
    """``save`` then ``type(r).load`` gives the same length and the same results."""
    keys = clustered_keys(200, 12, clusters=5, seed=6)
    retriever = _built(make, keys)
    label = _label(retriever)
    directory = Path(directory) / f"retriever-{label}"
    retriever.save(directory)
    loaded = type(retriever).load(directory)
    assert isinstance(loaded, type(retriever)), f"{label}: load returned {type(loaded).__name__}"
    assert len(loaded) == len(retriever), f"{label}: loaded index has {len(loaded)} entries, saved {len(retriever)}"
    exclude = [[i] for i in range(25)]
    a, b = retriever.search(keys[:25], 7, exclude), loaded.search(keys[:25], 7, exclude)
    assert torch.equal(a.ids, b.ids), f"{label}: loaded index returns different ids"
    assert torch.allclose(a.scores, b.scores, equal_nan=True), f"{label}: loaded index returns different scores"


def check_recall(make: MakeRetriever, *, min_recall: float = 0.95, k: int = 32, n: int = 3000,
                 dim: int = 32, n_queries: int = 200) -> float:
    """Recall@k against brute force on a clustered set (own entry excluded). Returns the recall.

    A returned id counts as a hit when its true cosine reaches the exact k-th score, so ties at
    the cut do not count against a back-end.
    """
    keys = clustered_keys(n, dim, clusters=30, seed=7)
    retriever = _built(make, keys)
    label = _label(retriever)
    queries = keys[:n_queries]
    exclude = [[i] for i in range(n_queries)]
    res = retriever.search(queries, k, exclude)
    check_result(res, keys, queries, k, exclude, label, retriever.similarity_features)
    features = retriever.similarity_features
    ref_s, _ = reference_search(keys, queries, k, exclude, features)
    scores, ids = _np(res)
    true = (_unit(features(queries))[:, None, :] * _unit(features(keys))[np.maximum(ids, 0)]).sum(-1)
    hits = ((ids >= 0) & (true >= ref_s[:, -1:] - 1e-6)).sum()
    recall = float(hits) / (n_queries * k)
    assert recall >= min_recall, f"{label}: recall@{k} {recall:.3f} < {min_recall} against exact search"
    return recall


def check_retriever(make: MakeRetriever, directory: str | Path, *, min_recall: float | None = 0.95,
                    ranked: bool | None = None) -> None:
    """Every contract check. ``min_recall=None`` skips the recall check and, unless ``ranked``
    says otherwise, the nearest-first checks (non-ranking ablations such as ``random``)."""
    ranked = (min_recall is not None) if ranked is None else ranked
    check_cosine_semantics(make)
    check_exclusion(make)
    check_k_larger_than_database(make)
    check_empty_database(make)
    check_duplicate_keys(make, ranked=ranked)
    check_zero_vectors(make)
    if _exact(make()):
        check_determinism(make)
    check_save_load(make, directory)
    if min_recall is not None and not _exact(make()):
        check_recall(make, min_recall=min_recall)


class RetrieverContract:
    """pytest-style base class: subclass it (named ``Test...``) and define a ``make_retriever``
    fixture returning a zero-argument factory. ``tmp_path`` is pytest's own fixture."""

    #: minimum recall@32 vs exact for approximate back-ends; None skips (e.g. random ablations)
    min_recall: float | None = 0.95

    def test_cosine_semantics(self, make_retriever: MakeRetriever) -> None:
        check_cosine_semantics(make_retriever)

    def test_exclusion(self, make_retriever: MakeRetriever) -> None:
        check_exclusion(make_retriever)

    def test_k_larger_than_database(self, make_retriever: MakeRetriever) -> None:
        check_k_larger_than_database(make_retriever)

    def test_empty_database(self, make_retriever: MakeRetriever) -> None:
        check_empty_database(make_retriever)

    def test_duplicate_keys(self, make_retriever: MakeRetriever) -> None:
        check_duplicate_keys(make_retriever, ranked=self.min_recall is not None)

    def test_zero_vectors(self, make_retriever: MakeRetriever) -> None:
        check_zero_vectors(make_retriever)

    def test_determinism(self, make_retriever: MakeRetriever) -> None:
        if _exact(make_retriever()):
            check_determinism(make_retriever)

    def test_save_load(self, make_retriever: MakeRetriever, tmp_path: Path) -> None:
        check_save_load(make_retriever, tmp_path)

    def test_recall(self, make_retriever: MakeRetriever) -> None:
        if self.min_recall is not None and not _exact(make_retriever()):
            check_recall(make_retriever, min_recall=self.min_recall)
