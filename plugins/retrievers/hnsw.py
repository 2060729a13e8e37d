"""`hnsw`: hnswlib graph index in cosine space (approximate, seeded).

Same exclusion strategy as `faiss`: over-fetch ``k + max exclusions``, filter, widen the rows
that are still short (``ptrag.core.retrieval.search_with_exclusion``). Builds are reproducible
for a given seed with ``threads: 1`` (hnswlib's multi-threaded insertion order varies).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ptrag.core.errors import ConfigError
from ptrag.core.hookspecs import BuildContext, ComponentParams, RetrieverSpec, hookimpl
from ptrag.core.interfaces import RetrievalResult, Retriever, RetrieverCapabilities
from ptrag.core.registry import builtin_specs
from ptrag.core.retrieval import (
    as_matrix,
    check_k,
    check_keys,
    normalise_exclude,
    normalise_rows,
    search_with_exclusion,
)


class HnswParams(ComponentParams):
    k: int = Field(32, ge=0, description="candidates per query")
    M: int = Field(32, ge=2, le=128, description="links per node")
    ef_construction: int = Field(200, ge=8, le=4096, description="candidate list while building")
    ef: int = Field(128, ge=1, le=32768, description="candidate list while searching (raised to the fetch)")
    threads: int = Field(1, ge=-1, description="build/search threads; -1 = all cores; 1 = reproducible build")
    seed: int | None = Field(None, description="graph seed; default: the run's seed")


def _hnswlib():
    try:
        import hnswlib
    except ImportError:
        raise ConfigError("retriever hnsw needs the hnswlib package: pip install hnswlib") from None
    return hnswlib


class HnswRetriever(Retriever):
    capabilities = RetrieverCapabilities(exact=False)

    def __init__(self, params: HnswParams | None = None, seed: int = 0) -> None:
        self.params = params or HnswParams()
        self.seed = self.params.seed if self.params.seed is not None else seed
        self.index = None
        self.dim = 0
        self._n = 0

    def build(self, keys: np.ndarray | Any, meta: Any | None = None) -> None:
        hnswlib = _hnswlib()
        arr = normalise_rows(check_keys(keys, self.name or "hnsw"))
        p = self.params
        index = hnswlib.Index(space="cosine", dim=arr.shape[1])
        index.init_index(max_elements=len(arr), ef_construction=p.ef_construction, M=p.M,
                         random_seed=self.seed % 2**31)
        index.add_items(arr, np.arange(len(arr)), num_threads=p.threads)
        index.set_ef(p.ef)
        self.index, self.dim, self._n = index, arr.shape[1], len(arr)

    def _raw(self, queries: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.set_ef(max(self.params.ef, fetch))
        labels, dist = self.index.knn_query(queries, k=fetch, num_threads=self.params.threads)
        return (1.0 - dist).astype(np.float32), labels.astype(np.int64)

    def search(self, queries: np.ndarray | Any, k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> RetrievalResult:
        k = check_k(k)
        if self.index is None:
            raise ConfigError("retriever hnsw: search before build; call build(keys) first")
        q = normalise_rows(as_matrix(queries, "queries", self.dim))
        excl = normalise_exclude(exclude, len(q), self._n)
        return search_with_exclusion(self._raw, q, k, excl, self._n)

    def save(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        if self.index is not None:
            self.index.save_index(str(path / "index.hnsw"))
        (path / "retriever.json").write_text(json.dumps(
            {"name": self.name, "n": self._n, "dim": self.dim, "seed": self.seed, "params": self.params.model_dump()}))

    @classmethod
    def load(cls, directory: str | Path) -> HnswRetriever:
        path = Path(directory)
        info = json.loads((path / "retriever.json").read_text())
        out = cls(HnswParams(**info["params"]), info["seed"])
        out._n, out.dim = info["n"], info["dim"]
        if (path / "index.hnsw").is_file():
            out.index = _hnswlib().Index(space="cosine", dim=out.dim)
            out.index.load_index(str(path / "index.hnsw"), max_elements=out._n)
            out.index.set_ef(out.params.ef)
        return out

    def __len__(self) -> int:
        return self._n


def make_hnsw(params: HnswParams, ctx: BuildContext) -> HnswRetriever:
    retriever = HnswRetriever(params, ctx.seed)
    retriever.capabilities = RetrieverCapabilities(k=params.k, exact=False)
    return retriever


@hookimpl
def ptrag_retrievers() -> list[RetrieverSpec]:
    return builtin_specs("retriever", __name__)
