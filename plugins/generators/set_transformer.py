"""`set_transformer`: a STATE-style state-transition model, written from the papers' description.

control cells [B,S,G] -> MLP -> [B,S,H]; perturbation (gene embedding [B,E] or one-hot index)
-> MLP -> [B,H], added to every cell; optional batch embedding per cell; the retrieved context
[B,S,H] (PT-RAG) added; a bidirectional transformer encoder over the S cells of each set
(torch's own layers, scaled-dot-product attention); a decoder to expression space whose output is
added to the control cells (residual), so predicted cells keep the controls' real cell-to-cell
variability instead of collapsing to a decoded mean.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ptrag.core.errors import ConfigError
from ptrag.core.hookspecs import BuildContext, ComponentParams, GeneratorSpec, hookimpl
from ptrag.core.interfaces import CellEncoding, CellSetBatch, GenerationInput, Generator, GeneratorCapabilities
from ptrag.core.registry import builtin_specs


def mlp(n_in: int, n_hidden: int, n_out: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(n_hidden, n_out))


def set_encoder(hidden_dim: int, params: SetEncoderParams) -> nn.TransformerEncoder:
    """A bidirectional transformer over the cells of a set (pre-norm, GELU; no positions: a set)."""
    if hidden_dim % params.n_heads:
        raise ConfigError(f"generator.n_heads {params.n_heads} must divide model.hidden_dim {hidden_dim}")
    layer = nn.TransformerEncoderLayer(
        d_model=hidden_dim, nhead=params.n_heads, dim_feedforward=params.ff_mult * hidden_dim,
        dropout=params.dropout, activation="gelu", batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers=params.n_layers, enable_nested_tensor=False)


class SetEncoderParams(ComponentParams):
    """The transformer over a cell set (shared by the generators built on it)."""

    n_layers: int = Field(2, ge=1, description="transformer encoder layers")
    n_heads: int = Field(4, ge=1, description="attention heads (must divide model.hidden_dim)")
    ff_mult: int = Field(4, ge=1, description="feed-forward width as a multiple of hidden_dim")
    dropout: float = Field(0.1, ge=0, lt=1)


class SetTransformerParams(SetEncoderParams):
    pert_encoding: Literal["embedding", "onehot"] = "embedding"
    batch_encoder: bool = Field(False, description="add a learned embedding of each control cell's batch")
    context_mode: Literal["add", "replace"] = Field(
        "add", description="add: the selected context is added to the cell states; replace: it replaces the "
        "(control + perturbation) input of the transformer, as in the PT-RAG authors' code")
    decoder_init: Literal["default", "zero"] = Field(
        "default", description="default: torch's init; zero: the decoder's last layer starts at 0, so an untrained "
        "model predicts the controls (measured slower to learn: docs/model.md)")


class SetTransformerGenerator(Generator):
    """See the module docstring. ``hidden_dim`` comes from ``model.hidden_dim`` (BuildContext)."""

    def __init__(self, params: SetTransformerParams, ctx: BuildContext):
        super().__init__()
        h, g = ctx.hidden_dim, ctx.n_genes
        self.params = params
        self.capabilities = GeneratorCapabilities(  # one-hot never reads gene embeddings
            trainable=True, uses_retrieval=True, reads_gene_embeddings=params.pert_encoding == "embedding")
        self.cell_encoder = mlp(g, h, h, params.dropout)
        if params.pert_encoding == "onehot":
            # one-hot times a linear layer == an embedding table; the last row is "unknown gene"
            self.n_perts = max(ctx.n_perts, 1)
            self.pert_table = nn.Embedding(self.n_perts + 1, h)
            self.pert_encoder = mlp(h, h, h)
        else:
            self.pert_encoder = mlp(max(ctx.embed_dim, 1), h, h)
        self.batch_embedding = nn.Embedding(max(ctx.n_batches, 1) + 1, h) if params.batch_encoder else None
        self.transformer = set_encoder(h, params)
        self.norm = nn.LayerNorm(h)
        self.decoder = mlp(h, h, g)
        if params.decoder_init == "zero":  # start as "no effect": predicted = control cells
            nn.init.zeros_(self.decoder[-1].weight)
            nn.init.zeros_(self.decoder[-1].bias)

    def _query(self, batch: CellSetBatch) -> torch.Tensor:
        if self.params.pert_encoding == "onehot":
            index = batch.pert_index.clone()
            index[(index < 0) | (index >= self.n_perts)] = self.n_perts
            return self.pert_encoder(self.pert_table(index))
        return self.pert_encoder(batch.pert_emb.to(batch.ctrl.dtype))

    def encode(self, batch: CellSetBatch) -> CellEncoding:
        """Cell states [B,S,H] (control encoding + perturbation encoding) and the query [B,H]."""
        query = self._query(batch)
        states = self.cell_encoder(batch.ctrl) + query.unsqueeze(1)
        if self.batch_embedding is not None and batch.batch_index is not None:
            unknown = self.batch_embedding.num_embeddings - 1  # last row: unseen or missing batch
            index = batch.batch_index
            index = torch.where((index < 0) | (index >= unknown), torch.full_like(index, unknown), index)
            states = states + self.batch_embedding(index)
        return CellEncoding(states, query)

    def forward(self, inputs: GenerationInput) -> torch.Tensor:
        batch, context = inputs.batch, inputs.context
        states = (inputs.encoding or self.encode(batch)).states
        if context is not None:
            states = context if self.params.context_mode == "replace" else states + context
        h = self.norm(self.transformer(states))
        return batch.ctrl + self.decoder(h).to(batch.ctrl.dtype)


@hookimpl
def ptrag_generators() -> list[GeneratorSpec]:
    return builtin_specs("generator", __name__)
