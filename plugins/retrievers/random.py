"""`random`: uniformly random candidates (the retrieval ablation), seeded.

Each query gets ``k`` distinct entries drawn uniformly from those not excluded. Scores are the
actual cosine between query and pick (so downstream code that uses stage-1 scores sees real
values), and each row is ordered by that score, lower id first on ties. Every ``search`` call
draws anew from one seeded generator whose state is saved with the index, so a loaded
retriever continues the exact same sequence of draws.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from ptrag.core.hookspecs import BuildContext, ComponentParams, RetrieverSpec, hookimpl
from ptrag.core.interfaces import RetrievalResult, Retriever, RetrieverCapabilities
from ptrag.core.registry import builtin_specs
from ptrag.core.retrieval import brute_force_query, check_keys, flat_exclusions, normalise_rows, rank_candidates


class RandomParams(ComponentParams):
    k: int = Field(32, ge=0, description="candidates per query")
    seed: int | None = Field(None, description="draw seed; default: the run's seed")
    batch_size: int = Field(1024, ge=1, description="queries drawn per block")


class RandomRetriever(Retriever):
    capabilities = RetrieverCapabilities(exact=False)

    def __init__(self, seed: int = 0, batch_size: int = 1024) -> None:
        self.seed = seed
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.keys = np.zeros((0, 0), np.float32)

    def build(self, keys: np.ndarray | Any, meta: Any | None = None) -> None:
        self.keys = normalise_rows(check_keys(keys, self.name or "random"))
        self.rng = np.random.default_rng(self.seed)

    def search(self, queries: np.ndarray | Any, k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> RetrievalResult:
        job = brute_force_query("random", self.keys, queries, k, exclude)
        q, excl, out, kk, n = job.queries, job.exclude, job.out, job.kk, len(self.keys)
        if kk == 0:
            return out
        for start in range(0, len(q), self.batch_size):
            stop = min(start + self.batch_size, len(q))
            # random priorities; excluded ids get +inf so they are never among the kk smallest
            prio = self.rng.random((stop - start, n))
            rows, cols = flat_exclusions(excl[start:stop])
            prio[rows, cols] = np.inf
            if kk < n:
                picks = np.argpartition(prio, kk - 1, axis=1)[:, :kk]
            else:
                picks = np.tile(np.arange(n), (stop - start, 1))
            allowed = np.isfinite(np.take_along_axis(prio, picks, axis=1))
            picks = np.where(allowed, picks, -1)
            scores = np.einsum("qe,qke->qk", q[start:stop], self.keys[np.maximum(picks, 0)])
            s, i, _ = rank_candidates(scores, picks, None, k, n)
            out.scores[start:stop] = torch.from_numpy(s)
            out.ids[start:stop] = torch.from_numpy(i)
        return out

    def save(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "keys.npy", self.keys)
        (path / "retriever.json").write_text(json.dumps(
            {"name": self.name, "n": len(self), "seed": self.seed, "batch_size": self.batch_size,
             "rng_state": self.rng.bit_generator.state}))

    @classmethod
    def load(cls, directory: str | Path) -> RandomRetriever:
        path = Path(directory)
        info = json.loads((path / "retriever.json").read_text())
        out = cls(info["seed"], info["batch_size"])
        out.keys = np.load(path / "keys.npy", allow_pickle=False)
        out.rng.bit_generator.state = info["rng_state"]
        return out

    def __len__(self) -> int:
        return int(self.keys.shape[0])


def make_random(params: RandomParams, ctx: BuildContext) -> RandomRetriever:
    retriever = RandomRetriever(params.seed if params.seed is not None else ctx.seed, params.batch_size)
    retriever.capabilities = RetrieverCapabilities(k=params.k, exact=False)
    return retriever


@hookimpl
def ptrag_retrievers() -> list[RetrieverSpec]:
    return builtin_specs("retriever", __name__)
