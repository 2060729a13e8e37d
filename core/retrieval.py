"""The retriever back-ends' toolkit: input checks, cosine normalisation, exclusion, ranking, padding.

Every retriever back-end (built-in or third-party) can use these helpers so that the documented
behaviour is the same everywhere:

- cosine semantics: keys and queries are L2-normalised; a zero vector stays zero, so its cosine
  with anything is 0 (never NaN);
- ``k`` larger than what is left after exclusion is clamped: the result always has exactly ``k``
  columns and the missing ones are padded with id ``-1`` and score ``-inf``;
- ties (duplicate keys, e.g. one gene in several cell lines) are ordered by lower id first;
- ``exclude[q]`` lists database ids query ``q`` must never get; negative ids (``-1`` = "no own
  entry") are ignored, ids past the database are an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataError
from .interfaces import RetrievalResult

__all__ = [
    "as_matrix",
    "check_k",
    "normalise_rows",
    "normalise_exclude",
    "flat_exclusions",
    "rank_candidates",
    "search_with_exclusion",
    "empty_result",
    "brute_force_query",
]

# raw search: (normalised queries [q,E], fetch) -> (scores [q,fetch], ids [q,fetch], -1 = none)
RawSearch = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- input checks


def as_matrix(x: Any, what: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 [n,E] array, with a one-line DataError when it is not one."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    try:
        arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    except (TypeError, ValueError) as exc:
        raise DataError(f"retrieval {what}: expected a numeric [n, dim] matrix ({exc})") from None
    if arr.ndim != 2:
        raise DataError(f"retrieval {what}: expected a 2-D [n, dim] matrix, got shape {tuple(arr.shape)}")
    if dim is not None and len(arr) and arr.shape[1] != dim:
        raise DataError(f"retrieval {what}: dimension {arr.shape[1]} does not match the index's {dim}; "
                        "use the same gene embeddings for building and searching")
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise DataError(f"retrieval {what}: row {bad} holds NaN or inf; fix or drop that embedding")
    return arr


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ConfigError(f"retrieval: k must be a non-negative integer, got {k!r}")
    return int(k)


def check_keys(keys: Any, name: str) -> np.ndarray:
    """Keys for ``build``: a non-empty [N,E] matrix (an empty database is a clear error)."""
    arr = as_matrix(keys, "keys")
    if len(arr) == 0 or arr.shape[1] == 0:
        raise DataError(f"retriever {name!r}: cannot index an empty database (0 entries); "
                        "the training split must leave at least one (perturbation, cell line)")
    return arr


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalised rows; zero rows stay zero (cosine 0 with everything)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32, copy=False)


def normalise_exclude(exclude: Sequence[Sequence[int]] | None, n_queries: int, n_keys: int) -> list[np.ndarray]:
    """One sorted, unique int64 array per query; negative ids dropped, ids >= N rejected."""
    if exclude is None:
        return [np.empty(0, np.int64) for _ in range(n_queries)]
    if len(exclude) != n_queries:
        raise DataError(f"retrieval: exclude has {len(exclude)} lists for {n_queries} queries; give one per query")
    out = []
    for q, ids in enumerate(exclude):
        arr = np.unique(np.asarray(list(ids) if not isinstance(ids, (np.ndarray, torch.Tensor)) else ids,
                                   dtype=np.int64).ravel())
        arr = arr[arr >= 0]
        if len(arr) and arr[-1] >= n_keys:
            raise DataError(f"retrieval: exclude[{q}] lists id {int(arr[-1])} but the index has {n_keys} entries")
        out.append(arr)
    return out


def flat_exclusions(exclude: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row, id) pairs of every exclusion, for a vectorised scatter."""
    rows = np.repeat(np.arange(len(exclude), dtype=np.int64), [len(e) for e in exclude])
    cols = np.concatenate(exclude) if exclude else np.empty(0, np.int64)
    return rows, cols.astype(np.int64, copy=False)


def empty_result(n_queries: int, k: int) -> RetrievalResult:
    return RetrievalResult(torch.full((n_queries, k), float("-inf"), dtype=torch.float32),
                           torch.full((n_queries, k), -1, dtype=torch.long))


# --------------------------------------------------------------------------- ranking


def rank_candidates(scores: np.ndarray, ids: np.ndarray, exclude: list[np.ndarray] | None, k: int,
                    n_keys: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop excluded / missing / repeated candidates, order by (score desc, id asc), keep ``k``.

    Returns scores [Q,k] (-inf padded), ids [Q,k] (-1 padded) and the count of valid ids per row.
    Vectorised: exclusions are matched as ``row * N + id`` codes with one ``np.isin``.
    """
    q, f = ids.shape
    ids = ids.astype(np.int64, copy=False)
    scores = scores.astype(np.float32, copy=False)
    rows = np.broadcast_to(np.arange(q, dtype=np.int64)[:, None], (q, f))
    bad = (ids < 0) | ~np.isfinite(scores)
    if exclude is not None and any(len(e) for e in exclude):
        er, ec = flat_exclusions(exclude)
        bad |= np.isin(rows * n_keys + ids, er * n_keys + ec)
    s = np.where(bad, -np.inf, scores)
    i = np.where(bad, np.iinfo(np.int64).max, ids)
    order = np.lexsort((i, -s), axis=-1) if f else np.zeros((q, 0), np.int64)
    s = np.take_along_axis(s, order, axis=1)
    i = np.take_along_axis(i, order, axis=1)
    # the same id twice (some indexes can return it) counts once
    dup = np.zeros_like(i, dtype=bool)
    if f > 1:
        srt = np.sort(i, axis=1)
        if (srt[:, 1:] == srt[:, :-1]).any():
            for r in np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1)):
                _, first = np.unique(i[r], return_index=True)
                keep = np.zeros(f, bool)
                keep[first] = True
                dup[r] = ~keep
            s = np.where(dup, -np.inf, s)
            i = np.where(dup, np.iinfo(np.int64).max, i)
            order = np.lexsort((i, -s), axis=-1)
            s, i = np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)
    s, i = s[:, :k], i[:, :k]
    valid = np.isfinite(s)
    i = np.where(valid, i, -1)
    if s.shape[1] < k:
        s = np.pad(s, ((0, 0), (0, k - s.shape[1])), constant_values=-np.inf)
        i = np.pad(i, ((0, 0), (0, k - i.shape[1])), constant_values=-1)
    return s.astype(np.float32), i.astype(np.int64), valid.sum(axis=1)


@dataclass
class BruteForceQuery:
    """What a brute-force ``search`` over all keys needs: unit queries, exclusions, a padded result."""

    queries: np.ndarray  # [Q,E] unit rows
    exclude: list[np.ndarray]
    out: RetrievalResult  # [Q,k], all padding
    kk: int  # candidates that can be returned per query: min(k, N)


def brute_force_query(name: str, keys: np.ndarray, queries: Any, k: Any,
                      exclude: Sequence[Sequence[int]] | None) -> BruteForceQuery:
    """Validate a search against ``keys`` [N,E] (built, k, query shape, exclusions) in one place."""
    k = check_k(k)
    n = len(keys)
    if n == 0:
        raise ConfigError(f"retriever {name}: search before build; call build(keys) first")
    q = normalise_rows(as_matrix(queries, "queries", keys.shape[1]))
    return BruteForceQuery(q, normalise_exclude(exclude, len(q), n), empty_result(len(q), k), min(k, n))


def search_with_exclusion(raw: RawSearch, queries: np.ndarray, k: int, exclude: list[np.ndarray],
                          n_keys: int, min_fetch: int = 0) -> RetrievalResult:
    """Over-fetch ``k + max exclusions + 1`` from an index, filter, and widen rows still short.

    A row is re-searched with twice the fetch when it has fewer than ``min(k, N - excluded)``
    valid candidates, or when its k-th score ties the last fetched one (an unseen duplicate key
    with a lower id may exist), until the fetch covers the whole database.
    """
    nq = len(queries)
    if k == 0 or nq == 0:
        return empty_result(nq, k)
    n_excl = np.array([len(e) for e in exclude], dtype=np.int64)
    want = np.minimum(k, n_keys - n_excl)
    out_s = np.full((nq, k), -np.inf, np.float32)
    out_i = np.full((nq, k), -1, np.int64)
    todo = np.arange(nq)
    # one beyond k + exclusions, so a tie at the cut is visible (the last fetched equals the k-th)
    fetch = min(n_keys, max(k + int(n_excl.max(initial=0)) + 1, min_fetch))
    while len(todo):
        s, i = raw(queries[todo], fetch)
        rs, ri, got = rank_candidates(s, i, [exclude[t] for t in todo], k, n_keys)
        out_s[todo], out_i[todo] = rs, ri
        if fetch >= n_keys:
            break
        last = np.where(i >= 0, s, np.inf).min(axis=1)  # lowest score the index returned
        kth = rs[:, k - 1]
        short = (got < want[todo]) | (np.isfinite(kth) & (kth <= last))
        todo = todo[short]
        fetch = min(n_keys, fetch * 2)
    return RetrievalResult(torch.from_numpy(out_s), torch.from_numpy(out_i))
