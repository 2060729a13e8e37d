"""Rank database entries by Pearson correlation with the query's gene embedding.

Pearson correlation is cosine similarity after centring each vector on its own mean, so it
ignores a constant offset that some embedding models add to every dimension.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptrag.core.interfaces import RetrievalResult, Retriever, RetrieverCapabilities


def _centred(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x - x.mean(axis=1, keepdims=True)


def _centred_unit(x: np.ndarray) -> np.ndarray:
    x = _centred(x)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)  # a constant vector centres to zero and scores 0


class PearsonRetriever(Retriever):
    # brute force: results are exact and identical on every call (the factory adds k)
    capabilities = RetrieverCapabilities(exact=True)

    # ptrag's contract tests compare us with brute-force cosine of these features
    similarity_features = staticmethod(_centred)

    def __init__(self) -> None:
        self.keys = np.zeros((0, 0), dtype=np.float32)

    def build(self, keys: Any, meta: Any | None = None) -> None:
        keys = np.asarray(keys, dtype=np.float32)
        if keys.ndim != 2 or len(keys) == 0:
            raise ValueError("pearson retriever: cannot index an empty database; give it at least one key")
        self.keys = _centred_unit(keys)

    def search(self, queries: Any, k: int, exclude: Sequence[Sequence[int]] | None = None) -> RetrievalResult:
        if len(self.keys) == 0:
            raise ValueError("pearson retriever: search before build; call build(keys) first")
        if isinstance(queries, torch.Tensor):
            queries = queries.detach().cpu().numpy()
        sims = _centred_unit(queries) @ self.keys.T  # [Q,N]
        for row, ids in enumerate(exclude or []):
            ids = [i for i in ids if 0 <= i < sims.shape[1]]
            sims[row, ids] = -np.inf
        k_eff = min(k, sims.shape[1])
        # stable sort: ties (duplicate keys) come back lowest id first, deterministically
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k_eff]
        scores = np.take_along_axis(sims, order, axis=1)
        ids = np.where(np.isfinite(scores), order, -1)
        scores = np.where(ids >= 0, scores, -np.inf)
        if k_eff < k:  # pad to K columns, as ptrag's Retriever contract asks
            pad = k - k_eff
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return RetrievalResult(torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(ids.astype(np.int64)))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "keys.npy", self.keys)
        (directory / "retriever.json").write_text(json.dumps({"name": self.name, "n": len(self.keys)}))

    @classmethod
    def load(cls, directory: str | Path) -> PearsonRetriever:
        out = cls()
        out.keys = np.load(Path(directory) / "keys.npy")
        return out

    def __len__(self) -> int:
        return len(self.keys)
