"""The evidence model: starts exactly at its baseline, weighs evidence by kind, learns from there."""

import numpy as np
import pytest
import torch

from ptrag.core.components.manager import build_manager
from ptrag.core.config import component_params, resolve_config
from ptrag.core.data.cellsets import CellSetSampler, Vocab
from ptrag.core.data.database import ResponseDatabase
from ptrag.core.data.embeddings import load_gene_embeddings
from ptrag.core.data.loading import load_screen
from ptrag.core.data.split import Split, random_fewshot_split
from ptrag.core.hookspecs import BuildContext
from ptrag.core.model.compose import PtragModel
from ptrag.core.model.neighbours import NeighbourTable
from ptrag.core.training.losses import set_loss

pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="module")
def tiny():
    manager = build_manager(entry_points=False)
    cfg = resolve_config(None, preset="ptrag-evidence", sets=["data.synth_preset=tiny", "model.hidden_dim=16"],
                         manager=manager)
    data = load_screen(cfg.data)
    table = load_gene_embeddings(None, data.perturbations)
    matrix, _ = table.lookup(data.perturbations, "zero")
    return manager, cfg, data, dict(zip(data.perturbations, matrix, strict=False))


def _model(manager, cfg, data, emb, split, preset=None, **retrieval):
    """A model built the way `ptrag run` builds it, untrained; its neighbour table and sampler."""
    if preset:
        cfg = resolve_config(None, preset=preset, sets=["data.synth_preset=tiny", "model.hidden_dim=16"],
                             manager=manager)
    database = ResponseDatabase.from_data(data, split.train, np.stack([emb[p] for p, _ in split.train]))
    ctx = BuildContext(n_genes=data.n_features, embed_dim=len(next(iter(emb.values()))), hidden_dim=16,
                       n_contexts=len(data.contexts), n_perts=len(data.perturbations),
                       gene_names=tuple(data.features), context_names=tuple(data.contexts))

    def build(kind, choice):
        return manager.get(kind, choice.name).build(component_params(choice, kind, manager), ctx)

    retriever = build("retriever", cfg.retriever)
    retriever.build(database.embeddings)
    generator = build("generator", cfg.generator)
    generator.fit(database)
    model = PtragModel(generator, build("selector", cfg.selector), database, hidden_dim=16,
                       context=cfg.model.context, context_names=data.contexts).eval()
    k = retrieval.get("k", int(cfg.retriever.params.get("k", 0) or 0))
    exclude = retrieval.get("exclude_same_gene", cfg.model.exclude_same_gene)
    neighbours = NeighbourTable(retriever, database, emb, k, exclude)
    vocab = Vocab(data.perturbations, data.contexts, emb)
    sampler = CellSetSampler(data, split.train, vocab, cell_set_len=16)
    return model, neighbours, sampler, database


def _predict(model, neighbours, sampler, groups, seed=0):
    batch = neighbours.attach(sampler.make_batch(groups, np.random.default_rng(seed)))
    with torch.no_grad():
        return model(batch)


def test_the_untrained_evidence_model_is_the_gene_other_lines_baseline(tiny):
    manager, cfg, data, emb = tiny
    split = random_fewshot_split(data, seed=0)
    groups = split.test
    model, nb, sampler, database = _model(manager, cfg, data, emb, split)
    assert all(database.entries_of(p) for p, _ in groups)  # every test gene is measured in another line
    pred, sel = _predict(model, nb, sampler, groups)
    base, bnb, _, _ = _model(manager, cfg, data, emb, split, preset="gene-other-lines")
    expected, _ = _predict(base, bnb, sampler, groups)
    assert torch.allclose(pred, expected, atol=1e-5)
    assert (pred >= 0).all()  # floored at 0, like every generator
    # what was used: the same gene in the other line, with coefficient 1 / (its other lines)
    same = np.array([[database.perts[i] == p if i >= 0 else False for i in row]
                     for row, (p, _) in zip(nb.rows(groups)[1].tolist(), groups, strict=False)])
    coef = sel.evidence.response.numpy()
    assert np.allclose(coef[same], 1.0) and np.allclose(coef[~same], 0.0)
    assert np.allclose(sel.evidence.deviation.numpy(), 0.0)


def test_without_the_gene_in_another_line_it_starts_as_neighbour_mean(tiny):
    manager, cfg, data, emb = tiny
    split = random_fewshot_split(data, seed=0)
    query = split.test[0]
    # take every other-line entry of the query gene out of training: no "same gene" evidence left
    others = [g for g in split.train if g[0] == query[0]]
    assert others
    split = Split([g for g in split.train if g not in others], list(split.val) + others, [query])
    model, nb, sampler, database = _model(manager, cfg, data, emb, split)
    assert not database.entries_of(query[0])
    pred, sel = _predict(model, nb, sampler, [query])
    base, bnb, _, _ = _model(manager, cfg, data, emb, split, preset="neighbour-mean", k=8, exclude_same_gene=True)
    expected, _ = _predict(base, bnb, sampler, [query])
    assert torch.allclose(pred, expected, atol=1e-5)
    assert np.isclose(sel.evidence.response.sum().item(), 1.0)
    assert int((sel.evidence.response > 0).sum()) == 8


def test_by_default_the_prediction_is_the_control_cells_plus_the_weighted_evidence(tiny):
    manager, cfg, data, emb = tiny
    split = random_fewshot_split(data, seed=0)
    model, nb, sampler, _ = _model(manager, cfg, data, emb, split)
    generator = model.generator
    assert not generator.params.correction and not hasattr(generator, "correction_head")  # off by default
    batch = nb.attach(sampler.make_batch(split.test, np.random.default_rng(0)))  # what _predict draws
    pred, sel = _predict(model, nb, sampler, split.test)
    with torch.no_grad():
        expected = (batch.ctrl + generator.shift(batch, sel)).clamp(min=0)  # floored, as every generator
    assert torch.allclose(pred, expected, atol=1e-6)


def test_every_learned_part_gets_a_gradient_from_the_start(tiny):
    manager, cfg, data, emb = tiny
    cfg = cfg.model_copy(update={"generator": cfg.generator.model_copy(
        update={"params": {**cfg.generator.params, "correction": True}})})
    split = random_fewshot_split(data, seed=0)
    model, nb, sampler, _ = _model(manager, cfg, data, emb, split)
    model.train()
    batch = nb.attach(sampler.sample(4, np.random.default_rng(1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pred, _ = model(batch)
    set_loss("energy", pred, batch.target).backward()
    selector, generator = model.selector, model.generator
    assert selector.mixer[-1].weight.grad.abs().sum() > 0  # mixing of the kinds (a_dev, beta, ...)
    assert generator.gain_head.weight.grad.abs().sum() > 0  # unequal responses per cell
    assert generator.correction_head[-1].weight.grad.abs().sum() > 0  # per-cell correction
    # with one same-gene entry per query (tiny has 2 lines) the weights within a kind start to learn
    # once the mixer gives the near and deviation kinds a share
    opt.step()
    opt.zero_grad()
    pred, _ = model(batch)
    set_loss("energy", pred, batch.target).backward()
    assert selector.candidate_scorer[-1].weight.grad.abs().sum() > 0


def test_other_lines_mean_and_deviation_of_the_database():
    db = ResponseDatabase(perts=["A", "A", "A", "B"], contexts=["x", "y", "z", "x"], n_cells=np.ones(4),
                          embeddings=np.zeros((4, 2)), response=np.array([[1.0], [2.0], [4.0], [7.0]]),
                          control_mean={})
    others, has = db.other_lines_mean()
    assert has.tolist() == [True, True, True, False]
    assert others[:, 0].tolist() == [3.0, 2.5, 1.5, 0.0]
