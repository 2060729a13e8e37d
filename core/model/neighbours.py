"""Stage-1 neighbours: one batched search per set of queries, attached to batches by group.

Retrieval is not differentiable and its results depend only on the query's (perturbation, cell
line), so the engine searches every group once (once per epoch for retrievers that are not
exact) instead of on every step. The query's own entry is always excluded; the same gene's
entries in other cell lines too when ``exclude_same_gene``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..components.guards import calling, check_retrieval, who
from ..errors import DataError
from ..interfaces import CellSetBatch, RetrievalResult, Retriever
from ..retrieval import as_matrix, check_k

Group = tuple[str, str]


def exclusion_lists(database: Any, queries: Sequence[Group], exclude_same_gene: bool) -> list[list[int]]:
    """Per query: the database entries it must not retrieve (``database.exclusion_ids``)."""
    return [list(database.exclusion_ids(p, c, exclude_same_gene)) for p, c in queries]


def _explain(database: Any, queries: Sequence[Group]) -> Callable[[int, int], str]:
    """Why query ``row`` must not get entry ``id``, in words, for a retriever that returned it."""
    def explain(row: int, entry: int) -> str:
        (pert, line), (got, got_line) = queries[row], (database.perts[entry], database.contexts[entry])
        what = "its own entry" if (got, got_line) == (pert, line) else \
            f"its gene's entry in {got_line} (model.exclude_same_gene)"
        return f"query {pert} in {line} got {what}, id {entry}"
    return explain


def precompute_neighbours(retriever: Retriever, database: Any, queries: list[Group], query_embeddings: np.ndarray,
                          k: int, exclude_same_gene: bool) -> RetrievalResult:
    """Stage-1 neighbours of every (pert, context) query in one batched search, on the CPU.

    The retriever must already be built on ``database.embeddings``; rows follow ``queries``.
    """
    q = as_matrix(query_embeddings, "query_embeddings")
    if len(q) != len(queries):
        raise DataError(f"precompute_neighbours: {len(queries)} queries but {len(q)} query embeddings")
    if len(database) and len(retriever) and len(retriever) != len(database):
        raise DataError(f"precompute_neighbours: the retriever indexes {len(retriever)} entries but the "
                        f"database has {len(database)}; rebuild the retriever on database.embeddings")
    exclude = exclusion_lists(database, queries, exclude_same_gene)
    with calling(retriever, "search"):
        result = retriever.search(q, check_k(k), [list(ids) for ids in exclude])  # its own copy: checked below
    check_retrieval(result, len(queries), k, len(database), exclude, who(retriever),
                    lambda row: f"{queries[row][0]} in {queries[row][1]}", _explain(database, queries))
    return RetrievalResult(result.scores.detach().to("cpu", torch.float32),
                           result.ids.detach().to("cpu", torch.long))


def with_neighbours(batch: CellSetBatch, scores: torch.Tensor, ids: torch.Tensor) -> CellSetBatch:
    """The batch with its stage-1 neighbours attached ([B,K] each)."""
    return replace(batch, neighbour_scores=scores, neighbour_ids=ids)


class NeighbourTable:
    """Stage-1 neighbours per (pert, context) group, precomputed in one batched search.

    ``refresh`` re-runs the search (once per epoch for non-deterministic retrievers); ``attach``
    puts the rows of a batch's groups on the batch. With ``k == 0`` batches get [B,0] tensors.
    """

    def __init__(self, retriever: Retriever, database: Any, pert_embedding: dict[str, np.ndarray], k: int,
                 exclude_same_gene: bool):
        self.retriever, self.database, self.k = retriever, database, int(k)
        self.pert_embedding, self.exclude_same_gene = pert_embedding, exclude_same_gene
        self.groups: list[Group] = []
        self._rows: dict[Group, tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, groups: list[Group]) -> None:
        new = [g for g in dict.fromkeys(groups) if g not in self._rows]
        if new:
            self.groups += new
            self._search(new)

    def refresh(self) -> None:
        self._rows.clear()
        self._search(self.groups)

    def _search(self, groups: list[Group]) -> None:
        if not groups:
            return
        if self.k == 0 or len(self.database) == 0:
            for g in groups:
                self._rows[g] = (torch.empty(0), torch.empty(0, dtype=torch.long))
            return
        queries = np.stack([self.pert_embedding[p] for p, _ in groups])
        result = precompute_neighbours(self.retriever, self.database, groups, queries, self.k,
                                       self.exclude_same_gene)
        for g, s, i in zip(groups, result.scores, result.ids, strict=True):
            self._rows[g] = (s, i)

    def export(self) -> tuple[list[Group], dict[Group, tuple[torch.Tensor, torch.Tensor]]]:
        """The searched groups and their rows, to hand to another process (:meth:`adopt`)."""
        return list(self.groups), dict(self._rows)

    def adopt(self, state: tuple[list[Group], dict]) -> None:
        self.groups, self._rows = list(state[0]), dict(state[1])

    def rows(self, groups: list[Group]) -> tuple[torch.Tensor, torch.Tensor]:
        self.add(groups)
        scores = torch.stack([self._rows[g][0] for g in groups])
        ids = torch.stack([self._rows[g][1] for g in groups])
        return scores, ids

    def attach(self, batch: CellSetBatch) -> CellSetBatch:
        scores, ids = self.rows(list(zip(batch.perts, batch.contexts, strict=True)))
        return with_neighbours(batch, scores.to(batch.ctrl.device), ids.to(batch.ctrl.device))
