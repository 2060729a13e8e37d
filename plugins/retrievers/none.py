"""`none`: no retrieval (the STATE baseline). Every search returns zero candidates."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptrag.core.hookspecs import BuildContext, ComponentParams, RetrieverSpec, hookimpl
from ptrag.core.interfaces import RetrievalResult, Retriever, RetrieverCapabilities
from ptrag.core.registry import builtin_specs


class NoRetrieval(Retriever):
    capabilities = RetrieverCapabilities(k=0, retrieves=False, reads_gene_embeddings=False)

    def __init__(self) -> None:
        self._n = 0

    def build(self, keys: np.ndarray | torch.Tensor, meta: Any | None = None) -> None:
        self._n = int(len(keys))

    def search(self, queries: np.ndarray | torch.Tensor, k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> RetrievalResult:
        q = len(queries)
        return RetrievalResult(torch.empty(q, 0), torch.empty(q, 0, dtype=torch.long))

    def save(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "retriever.json").write_text(json.dumps({"name": self.name, "n": self._n}))

    @classmethod
    def load(cls, directory: str | Path) -> NoRetrieval:
        out = cls()
        out._n = json.loads((Path(directory) / "retriever.json").read_text())["n"]
        return out

    def __len__(self) -> int:
        return self._n


class NoRetrievalParams(ComponentParams):
    k: int = 0


def make_none(params: NoRetrievalParams, ctx: BuildContext) -> NoRetrieval:
    return NoRetrieval()


@hookimpl
def ptrag_retrievers() -> list[RetrieverSpec]:
    return builtin_specs("retriever", __name__)
