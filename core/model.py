"""The PT-RAG composition: stage-1 neighbour ids -> candidate features -> selector -> generator.

Stage-1 retrieval is not differentiable and runs outside the module (precomputed per epoch,
core/retrieval.py); a batch arrives with ``neighbour_ids``/``neighbour_scores``. This module turns
each candidate database entry into a feature vector [H] (its gene embedding and/or its observed
pseudobulk response plus its cell line, see ``model.context``), lets the selector weigh the
candidates per cell from the generator's cell states and query, and hands the selected context
to the generator.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .interfaces import CandidateRelations, CellSetBatch, Generator, Selector, SelectorOutput


class CandidateEncoder(nn.Module):
    """Database entry -> [H]: MLP over the gene embedding (``embedding``), the observed response
    (``response``) or both concatenated (``both``); with responses the entry's cell line is added
    as a learned embedding, so "the same gene in another line" is distinguishable."""

    def __init__(self, database: Any, hidden_dim: int, mode: str, n_contexts: int,
                 context_names: list[str]):
        super().__init__()
        self.mode = mode
        emb = torch.as_tensor(np.asarray(database.embeddings, dtype=np.float32))
        resp = torch.as_tensor(np.asarray(database.response, dtype=np.float32))
        index = {c: i for i, c in enumerate(context_names)}
        ctx = torch.tensor([index.get(c, n_contexts) for c in database.contexts], dtype=torch.long)
        # buffers: saved with the checkpoint and moved with the model; the database is small
        self.register_buffer("db_embeddings", emb)
        self.register_buffer("db_response", resp)
        self.register_buffer("db_context", ctx)
        n_in = {"embedding": emb.shape[1], "response": resp.shape[1], "both": emb.shape[1] + resp.shape[1]}[mode]
        self.mlp = nn.Sequential(nn.LayerNorm(max(n_in, 1)), nn.Linear(max(n_in, 1), hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, hidden_dim))
        self.context_embedding = nn.Embedding(n_contexts + 1, hidden_dim) if mode != "embedding" else None

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        safe = ids.clamp(min=0)
        parts = []
        if self.mode in ("embedding", "both"):
            parts.append(self.db_embeddings[safe])
        if self.mode in ("response", "both"):
            parts.append(self.db_response[safe])
        return torch.cat(parts, dim=-1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B,K] (-1 padding) -> candidates [B,K,H]; padding rows are zero."""
        out = self.mlp(self.features(ids))
        if self.context_embedding is not None:
            out = out + self.context_embedding(self.db_context[ids.clamp(min=0)])
        return out * (ids >= 0).unsqueeze(-1).to(out.dtype)


class RelationTable(nn.Module):
    """Per database entry: its gene (as an id), its cell line and whether the gene has entries in
    other lines; turns a batch's neighbour ids into :class:`CandidateRelations`."""

    def __init__(self, database: Any, context_names: list[str]):
        super().__init__()
        genes = {p: i for i, p in enumerate(dict.fromkeys(database.perts))}
        index = {c: i for i, c in enumerate(context_names)}
        _, has_other = database.other_lines_mean()
        self.gene_id = genes
        self.register_buffer("db_gene", torch.tensor([genes[p] for p in database.perts], dtype=torch.long),
                             persistent=False)
        self.register_buffer("db_context", torch.tensor([index.get(c, len(context_names)) for c in database.contexts],
                                                        dtype=torch.long), persistent=False)
        self.register_buffer("db_has_other", torch.as_tensor(has_other, dtype=torch.bool), persistent=False)

    def forward(self, batch: CellSetBatch) -> CandidateRelations:
        ids = batch.neighbour_ids
        safe, valid = ids.clamp(min=0), ids >= 0
        query_gene = torch.tensor([self.gene_id.get(p, -1) for p in batch.perts], device=ids.device)
        query_context = batch.context_index.to(ids.device)
        candidate_context = self.db_context[safe]
        return CandidateRelations(
            same_gene=valid & (self.db_gene[safe] == query_gene[:, None]),
            same_context=valid & (candidate_context == query_context[:, None]),
            has_deviation=valid & self.db_has_other[safe],
            query_context=query_context,
            candidate_context=candidate_context,
        )


class PtragModel(nn.Module):
    """Selector + generator (+ candidate encoder) as one module; the engine trains this.

    With ``nonnegative`` the prediction is floored at 0 for every generator: log1p expression
    cannot be negative, so a valid cell is produced by construction instead of clipped afterwards.
    """

    def __init__(self, generator: Generator, selector: Selector, database: Any, *, hidden_dim: int,
                 context: str = "embedding", context_names: list[str] | None = None, nonnegative: bool = True):
        super().__init__()
        self.generator = generator
        self.selector = selector
        self.nonnegative = nonnegative
        names = list(context_names or sorted(set(database.contexts)))
        self.uses_retrieval = bool(getattr(generator, "uses_context", False)) and selector.name != "none" \
            and len(database) > 0
        self.candidates = CandidateEncoder(database, hidden_dim, context, len(names), names) \
            if self.uses_retrieval else None
        self.relations = RelationTable(database, names) \
            if self.uses_retrieval and getattr(selector, "uses_relations", False) else None

    @property
    def trainable(self) -> bool:
        return bool(getattr(self.generator, "trainable", True))

    def forward(self, batch: CellSetBatch) -> tuple[torch.Tensor, SelectorOutput]:
        """Predicted cells [B,S,G] and the selector's output (weights, aux losses, stats)."""
        pred, out = self._predict(batch)
        return (pred.clamp(min=0) if self.nonnegative else pred), out

    def _predict(self, batch: CellSetBatch) -> tuple[torch.Tensor, SelectorOutput]:
        ids = batch.neighbour_ids
        if self.candidates is None or ids is None or ids.shape[-1] == 0:
            return self.generator(batch, None), SelectorOutput(context=None, weights=None)
        encoded = self.generator.encode(batch)
        if encoded is None:
            return self.generator(batch, None), SelectorOutput(context=None, weights=None)
        states, query = encoded
        candidates = self.candidates(ids).to(states.dtype)
        extra = {"relations": self.relations(batch)} if self.relations is not None else {}
        out = self.selector(states, query, candidates, batch.neighbour_scores, ids >= 0, **extra)
        selection = {"selection": out} if getattr(self.generator, "uses_selection", False) else {}
        return self.generator(batch, out.context, encoded=encoded, **selection), out


def with_neighbours(batch: CellSetBatch, scores: torch.Tensor, ids: torch.Tensor) -> CellSetBatch:
    """The batch with its stage-1 neighbours attached ([B,K] each)."""
    return replace(batch, neighbour_scores=scores, neighbour_ids=ids)


class NeighbourTable:
    """Stage-1 neighbours per (pert, context) group, precomputed in one batched search.

    ``refresh`` re-runs the search (once per epoch for non-deterministic retrievers); ``attach``
    puts the rows of a batch's groups on the batch. With ``k == 0`` batches get [B,0] tensors.
    """

    def __init__(self, retriever: Any, database: Any, pert_embedding: dict[str, np.ndarray], k: int,
                 exclude_same_gene: bool):
        self.retriever, self.database, self.k = retriever, database, int(k)
        self.pert_embedding, self.exclude_same_gene = pert_embedding, exclude_same_gene
        self.groups: list[tuple[str, str]] = []
        self._rows: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, groups: list[tuple[str, str]]) -> None:
        new = [g for g in dict.fromkeys(groups) if g not in self._rows]
        if new:
            self.groups += new
            self._search(new)

    def refresh(self) -> None:
        self._rows.clear()
        self._search(self.groups)

    def _search(self, groups: list[tuple[str, str]]) -> None:
        if not groups:
            return
        if self.k == 0 or len(self.database) == 0:
            for g in groups:
                self._rows[g] = (torch.empty(0), torch.empty(0, dtype=torch.long))
            return
        from .retrieval import precompute_neighbours

        queries = np.stack([self.pert_embedding[p] for p, _ in groups])
        result = precompute_neighbours(self.retriever, self.database, groups, queries, self.k,
                                       self.exclude_same_gene)
        for g, s, i in zip(groups, result.scores, result.ids):
            self._rows[g] = (s, i)

    def export(self) -> tuple[list[tuple[str, str]], dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]]:
        """The searched groups and their rows, to hand to another process (:meth:`adopt`)."""
        return list(self.groups), dict(self._rows)

    def adopt(self, state: tuple[list[tuple[str, str]], dict]) -> None:
        self.groups, self._rows = list(state[0]), dict(state[1])

    def rows(self, groups: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        self.add(groups)
        scores = torch.stack([self._rows[g][0] for g in groups])
        ids = torch.stack([self._rows[g][1] for g in groups])
        return scores, ids

    def attach(self, batch: CellSetBatch) -> CellSetBatch:
        scores, ids = self.rows(list(zip(batch.perts, batch.contexts)))
        return with_neighbours(batch, scores.to(batch.ctrl.device), ids.to(batch.ctrl.device))
