"""`faiss`: FAISS indexes (flat, HNSW, IVF) over L2-normalised keys with inner product = cosine.

Uses faiss-gpu for flat/IVF when faiss reports GPUs (HNSW has no GPU version). Exclusion: FAISS
ID selectors apply one filter to a whole batch, not one per query, so we over-fetch
``k + max exclusions`` candidates, drop the excluded ones and re-search (doubling the fetch)
only the rows that are still short; see ``ptrag.core.retrieval.search_with_exclusion``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

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


class FaissParams(ComponentParams):
    k: int = Field(32, ge=0, description="candidates per query")
    index: Literal["flat", "hnsw", "ivf"] = Field("flat", description="flat = exact; hnsw / ivf = approximate")
    M: int = Field(32, ge=4, le=128, description="HNSW: links per node")
    ef_construction: int = Field(200, ge=8, le=4096, description="HNSW: candidate list while building")
    ef_search: int = Field(128, ge=1, le=32768, description="HNSW: candidate list while searching")
    nlist: int = Field(1024, ge=1, le=1 << 20, description="IVF: clusters (capped at N/39 for small databases)")
    nprobe: int = Field(32, ge=1, le=1 << 20, description="IVF: clusters visited per query (capped at nlist)")
    gpu: bool = Field(True, description="use a GPU when faiss reports one (flat and ivf only)")
    seed: int | None = Field(None, description="k-means seed for IVF; default: the run's seed")


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ConfigError("retriever faiss needs the faiss package: pip install faiss-cpu") from None
    return faiss


class FaissRetriever(Retriever):
    def __init__(self, params: FaissParams | None = None, seed: int = 0) -> None:
        self.params = params or FaissParams()
        self.seed = self.params.seed if self.params.seed is not None else seed
        self.capabilities = RetrieverCapabilities(k=self.params.k, exact=self.params.index == "flat")
        self.index = None
        self.dim = 0
        self._n = 0
        self.nlist = 0

    def _make_index(self, faiss, keys: np.ndarray):
        p, n, dim = self.params, len(keys), keys.shape[1]
        ip = faiss.METRIC_INNER_PRODUCT
        if p.index == "flat":
            return faiss.IndexFlatIP(dim)
        if p.index == "hnsw":
            index = faiss.IndexHNSWFlat(dim, p.M, ip)
            index.hnsw.efConstruction = p.ef_construction
            return index
        self.nlist = max(1, min(p.nlist, n // 39))  # faiss wants >= 39 training points per cluster
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, self.nlist, ip)
        index.cp.seed = self.seed
        index.train(keys)
        return index

    def _to_gpu(self, faiss, index):
        if self.params.gpu and self.params.index != "hnsw" and hasattr(faiss, "StandardGpuResources") \
                and faiss.get_num_gpus() > 0:
            self._gpu_res = faiss.StandardGpuResources()
            return faiss.index_cpu_to_gpu(self._gpu_res, 0, index)
        return index

    def _tune(self, index) -> None:
        faiss = _faiss()
        if self.params.index == "hnsw":
            faiss.downcast_index(index).hnsw.efSearch = self.params.ef_search
        elif self.params.index == "ivf":
            faiss.extract_index_ivf(index).nprobe = min(self.params.nprobe, self.nlist or self.params.nlist)

    def build(self, keys: np.ndarray | Any, meta: Any | None = None) -> None:
        faiss = _faiss()
        arr = normalise_rows(check_keys(keys, self.name or "faiss"))
        index = self._make_index(faiss, arr)
        index = self._to_gpu(faiss, index)
        index.add(arr)
        self._tune(index)
        self.index, self.dim, self._n = index, arr.shape[1], len(arr)

    def _raw(self, queries: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        if self.params.index == "hnsw":  # efSearch must cover the fetch or HNSW returns fewer
            _faiss().downcast_index(self.index).hnsw.efSearch = max(self.params.ef_search, fetch)
        scores, ids = self.index.search(queries, fetch)
        return scores, ids

    def search(self, queries: np.ndarray | Any, k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> RetrievalResult:
        k = check_k(k)
        if self.index is None:
            raise ConfigError("retriever faiss: search before build; call build(keys) first")
        q = normalise_rows(as_matrix(queries, "queries", self.dim))
        excl = normalise_exclude(exclude, len(q), self._n)
        return search_with_exclusion(self._raw, q, k, excl, self._n)

    def save(self, directory: str | Path) -> None:
        faiss = _faiss()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        index = self.index
        if index is not None and hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
            index = faiss.index_gpu_to_cpu(index)
        if index is not None:
            faiss.write_index(index, str(path / "index.faiss"))
        (path / "retriever.json").write_text(json.dumps({
            "name": self.name, "n": self._n, "dim": self.dim, "nlist": self.nlist, "seed": self.seed,
            "params": self.params.model_dump()}))

    @classmethod
    def load(cls, directory: str | Path) -> FaissRetriever:
        faiss = _faiss()
        path = Path(directory)
        info = json.loads((path / "retriever.json").read_text())
        out = cls(FaissParams(**info["params"]), info["seed"])
        out._n, out.dim, out.nlist = info["n"], info["dim"], info["nlist"]
        if (path / "index.faiss").is_file():
            out.index = out._to_gpu(faiss, faiss.read_index(str(path / "index.faiss")))
            out._tune(out.index)
        return out

    def __len__(self) -> int:
        return self._n


def make_faiss(params: FaissParams, ctx: BuildContext) -> FaissRetriever:
    return FaissRetriever(params, ctx.seed)


@hookimpl
def ptrag_retrievers() -> list[RetrieverSpec]:
    return builtin_specs("retriever", __name__)
