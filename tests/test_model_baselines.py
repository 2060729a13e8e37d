"""Baselines on hand-made databases: each definition in its docstring, checked exactly."""

import numpy as np
import pytest
import torch

from ptrag.core.hookspecs import BuildContext
from ptrag.core.interfaces import CellSetBatch, GenerationInput
from ptrag.plugins.generators.baselines import (
    ContextMeanBaseline,
    GeneOtherLinesBaseline,
    LinearBaseline,
    LinearParams,
    NeighbourMeanBaseline,
    PertMeanBaseline,
)


class DB:
    def __init__(self, perts, contexts, response, n_cells=None, embeddings=None):
        self.perts, self.contexts = perts, contexts
        self.response = np.asarray(response, np.float32)
        self.n_cells = np.asarray(n_cells if n_cells is not None else [1] * len(perts))
        self.embeddings = np.asarray(embeddings if embeddings is not None else np.zeros((len(perts), 2)), np.float32)


CTX = BuildContext(n_genes=2, embed_dim=2, n_contexts=2, context_names=("k562", "rpe1"))
DATABASE = DB(["A", "B", "A", "C"], ["k562", "k562", "rpe1", "rpe1"],
              [[1, 0], [3, 0], [0, 10], [0, 20]], n_cells=[1, 3, 1, 1])


def batch(perts, contexts, emb=None, ids=None):
    b = len(perts)
    index = {"k562": 0, "rpe1": 1}
    pert_emb = torch.tensor(emb if emb is not None else np.zeros((b, 2)), dtype=torch.float32)
    return CellSetBatch(ctrl=torch.zeros(b, 3, 2), pert_emb=pert_emb,
                        pert_index=torch.zeros(b, dtype=torch.long),
                        context_index=torch.tensor([index[c] for c in contexts]), perts=perts, contexts=contexts,
                        neighbour_ids=None if ids is None else torch.tensor(ids))


def shift_of(model, b):
    model.fit(DATABASE)
    out = model(GenerationInput(b))
    assert torch.equal(out - out[:, :1], torch.zeros_like(out))  # a mean shift of every control cell
    return out[:, 0].numpy()


def test_pert_mean_and_context_mean_differ_by_weighting():
    assert shift_of(PertMeanBaseline(CTX), batch(["X"], ["k562"]))[0] == pytest.approx([2, 0])
    assert shift_of(ContextMeanBaseline(CTX), batch(["X"], ["k562"]))[0] == pytest.approx([2.5, 0])  # (1*1+3*3)/4


def test_gene_other_lines_uses_the_same_gene_elsewhere_and_falls_back_to_pert_mean():
    model = GeneOtherLinesBaseline(CTX)
    out = shift_of(model, batch(["A", "C", "Z"], ["rpe1", "k562", "rpe1"]))
    assert out[0] == pytest.approx([1, 0])  # A in k562
    assert out[1] == pytest.approx([0, 20])  # C in rpe1
    assert out[2] == pytest.approx([0, 15])  # no other line: pert-mean of rpe1


def test_neighbour_mean_averages_valid_neighbours_only():
    model = NeighbourMeanBaseline(CTX)
    out = shift_of(model, batch(["Q", "Q"], ["k562", "rpe1"], ids=[[0, 2, -1], [-1, -1, -1]]))
    assert out[0] == pytest.approx([0.5, 5])
    assert out[1] == pytest.approx([0, 15])  # no neighbour: pert-mean fallback


def test_linear_recovers_an_exact_linear_map_per_cell_line():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((12, 2))
    w = {"k562": np.array([[1.0, 2.0], [0.0, -1.0]]), "rpe1": np.array([[-3.0, 0.0], [1.0, 1.0]])}
    contexts = ["k562"] * 6 + ["rpe1"] * 6
    response = np.stack([emb[i] @ w[c] + 0.5 for i, c in enumerate(contexts)])
    model = LinearBaseline(LinearParams(alpha=1e-6), CTX)
    model.fit(DB([f"G{i}" for i in range(12)], contexts, response, embeddings=emb))
    query = rng.standard_normal((2, 2))
    out = model(GenerationInput(batch(["N1", "N2"], ["k562", "rpe1"], emb=query)))[:, 0].numpy()
    assert out[0] == pytest.approx(query[0] @ w["k562"] + 0.5, abs=1e-3)
    assert out[1] == pytest.approx(query[1] @ w["rpe1"] + 0.5, abs=1e-3)
