"""Small, seeded inputs for the contract suites: a build context, a retrieval database, cell sets.

The numbers are made up but shaped like a run's: log1p-like non-negative expression, two cell
lines, genes measured in both lines (so "the same gene in another line" exists) and padding in
the retrieved candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..data.database import ResponseDatabase
from ..hookspecs import BuildContext
from ..interfaces import (
    CandidateRelations,
    CellEncoding,
    CellSetBatch,
    EvidenceWeights,
    MemberCells,
    SelectorOutput,
)

B, S, K, G, E, H = 3, 5, 6, 12, 8, 16
CONTEXTS = ("lineA", "lineB")
PERTS = ("G0", "G1", "G2", "G3", "G4")

MakeComponent = Callable[[BuildContext], Any]


def build_context(seed: int = 0) -> BuildContext:
    """What the engine would tell a factory for the tiny inputs below."""
    return BuildContext(n_genes=G, embed_dim=E, hidden_dim=H, n_contexts=len(CONTEXTS), n_perts=len(PERTS),
                        n_batches=2, gene_names=tuple(f"gene{i}" for i in range(G)), context_names=CONTEXTS,
                        seed=seed, device="cpu")


def tiny_database(seed: int = 0) -> ResponseDatabase:
    """Every perturbation in both lines: 10 entries with responses and gene embeddings."""
    rng = np.random.default_rng(seed)
    entries = [(p, c) for p in PERTS for c in CONTEXTS]
    gene_emb = {p: rng.normal(size=E).astype(np.float32) for p in PERTS}
    return ResponseDatabase(
        perts=[p for p, _ in entries], contexts=[c for _, c in entries],
        n_cells=rng.integers(20, 60, len(entries)), embeddings=np.stack([gene_emb[p] for p, _ in entries]),
        response=rng.normal(0, 0.3, (len(entries), G)).astype(np.float32),
        control_mean={c: rng.uniform(0.5, 2.0, G).astype(np.float32) for c in CONTEXTS})


def cell_sets(seed: int = 0, b: int = B, s: int = S, k: int = K, with_target: bool = True) -> CellSetBatch:
    """B sets of S control cells with K retrieved candidates each; the last candidate of the first
    set is padding (id -1)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(len(PERTS) * len(CONTEXTS), generator=g)[:k] for _ in range(b)])
    if k:
        ids[0, -1] = -1
    scores = torch.sort(torch.rand(b, k, generator=g), dim=1, descending=True).values
    return CellSetBatch(
        ctrl=torch.rand(b, s, G, generator=g) * 3, pert_emb=torch.randn(b, E, generator=g),
        pert_index=torch.arange(b) % len(PERTS), context_index=torch.arange(b) % len(CONTEXTS),
        target=torch.rand(b, s, G, generator=g) * 3 if with_target else None,
        batch_index=torch.zeros(b, s, dtype=torch.long), query_entry=torch.full((b,), -1),
        neighbour_ids=ids, neighbour_scores=torch.where(ids >= 0, scores, torch.full_like(scores, float("-inf"))),
        perts=[PERTS[i % len(PERTS)] for i in range(b)], contexts=[CONTEXTS[i % len(CONTEXTS)] for i in range(b)])


def members(names: tuple[str, ...]) -> dict[str, Callable[[CellSetBatch], torch.Tensor]]:
    """Trained members for an ensemble: member i predicts the control cells scaled and shifted by
    its own amounts, so members differ from each other and from the control cells."""
    return {name: (lambda batch, i=i: batch.ctrl * (1 + 0.1 * (i + 1)) + 0.05 * (i + 1))
            for i, name in enumerate(names)}


def member_cells(names: tuple[str, ...], seed: int = 0, n: int = 7, with_real: bool = True) -> MemberCells:
    """One group as an ensemble of whole groups sees it: member i's cells are the same control-like
    cells shifted by its own amount, a few of them near 0 (so a shift can cross it); the real cells
    lie between the members."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.0, 3.0, (n, G)).astype(np.float32)
    base[0, :3] = 0.0
    cells = {name: np.maximum(base + 0.3 * (i - 0.5) + rng.normal(0, 0.05, (n, G)), 0).astype(np.float32)
             for i, name in enumerate(names)}
    real = np.maximum(base.mean(axis=0) + 0.1 + rng.normal(0, 0.5, (n + 2, G)), 0).astype(np.float32)
    return MemberCells(PERTS[seed % len(PERTS)], CONTEXTS[seed % len(CONTEXTS)], cells,
                       real=real if with_real else None)


def relations(batch: CellSetBatch, database: ResponseDatabase) -> CandidateRelations:
    """How each candidate of ``batch`` relates to its query, as the engine computes it."""
    ids = batch.neighbour_ids
    safe, valid = ids.clamp(min=0), ids >= 0
    perts = np.array(database.perts)[safe.numpy()]
    lines = torch.tensor([[CONTEXTS.index(database.contexts[int(i)]) for i in row] for row in safe])
    same_gene = torch.tensor([[p == q for p in row] for row, q in zip(perts, batch.perts, strict=True)])
    return CandidateRelations(same_gene=valid & same_gene, same_context=valid & (lines == batch.context_index[:, None]),
                              has_deviation=valid.clone(), query_context=batch.context_index.clone(),
                              candidate_context=lines)


def selection(batch: CellSetBatch, seed: int = 0) -> SelectorOutput:
    """A selector's output as a generator might receive it: context, keep decisions and evidence."""
    g = torch.Generator().manual_seed(seed)
    b, s, _ = batch.shape
    k = batch.neighbour_ids.shape[1]
    mask = (batch.neighbour_ids >= 0).float()
    weights = (torch.rand(b, s, k, generator=g) > 0.5).float() * mask[:, None, :]
    coef = torch.softmax(torch.randn(b, k, generator=g), dim=-1) * mask
    return SelectorOutput(context=torch.randn(b, s, H, generator=g), weights=weights,
                          evidence=EvidenceWeights(response=coef, deviation=0.1 * coef))


def encoding(batch: CellSetBatch, seed: int = 0) -> CellEncoding:
    g = torch.Generator().manual_seed(seed)
    b, s, _ = batch.shape
    return CellEncoding(states=torch.randn(b, s, H, generator=g), query=torch.randn(b, H, generator=g))
