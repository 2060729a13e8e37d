"""Database entries as the selector sees them: encoded candidates and their relations to a query."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..interfaces import CandidateRelations, CellSetBatch


def context_index(database: Any, context_names: list[str]) -> torch.Tensor:
    """Each entry's cell-line index; a line the vocabulary lacks gets ``len(context_names)``."""
    index = {c: i for i, c in enumerate(context_names)}
    return torch.tensor([index.get(c, len(context_names)) for c in database.contexts], dtype=torch.long)


class CandidateEncoder(nn.Module):
    """Database entry -> [H]: MLP over the gene embedding (``embedding``), the observed response
    (``response``) or both concatenated (``both``); with responses the entry's cell line is added
    as a learned embedding, so "the same gene in another line" is distinguishable."""

    def __init__(self, database: Any, hidden_dim: int, mode: str, context_names: list[str]):
        super().__init__()
        self.mode = mode
        emb = torch.as_tensor(np.asarray(database.embeddings, dtype=np.float32))
        resp = torch.as_tensor(np.asarray(database.response, dtype=np.float32))
        # buffers: saved with the checkpoint and moved with the model; the database is small
        self.register_buffer("db_embeddings", emb)
        self.register_buffer("db_response", resp)
        self.register_buffer("db_context", context_index(database, context_names))
        n_in = {"embedding": emb.shape[1], "response": resp.shape[1], "both": emb.shape[1] + resp.shape[1]}[mode]
        self.mlp = nn.Sequential(nn.LayerNorm(max(n_in, 1)), nn.Linear(max(n_in, 1), hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, hidden_dim))
        self.context_embedding = nn.Embedding(len(context_names) + 1, hidden_dim) if mode != "embedding" else None

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
        _, has_other = database.other_lines_mean()
        self.gene_id = genes
        self.register_buffer("db_gene", torch.tensor([genes[p] for p in database.perts], dtype=torch.long),
                             persistent=False)
        self.register_buffer("db_context", context_index(database, context_names), persistent=False)
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
