"""Cell-set sampling with same-batch controls, evaluation sets, and the retrieval database."""

import numpy as np
import pandas as pd
import pytest

from ptrag.core.config import DataConfig
from ptrag.core.data.cellsets import CellSetSampler, Vocab
from ptrag.core.data.database import ResponseDatabase
from ptrag.core.data.dataset import PerturbationData
from ptrag.core.data.loading import load_screen


@pytest.fixture(scope="module")
def data():
    return load_screen(DataConfig(synth_preset="tiny"))


def sampler_for(data, s=64):
    vocab = Vocab(data.perturbations, data.contexts, {p: np.ones(4, np.float32) for p in data.perturbations},
                  batches=sorted(data.obs["batch"].astype(str).unique()))
    return CellSetSampler(data, data.groups, vocab, cell_set_len=s)


def test_batch_shapes_and_same_batch_controls(data):
    sampler = sampler_for(data)
    rng = np.random.default_rng(0)
    batch = sampler.sample(5, rng)
    assert batch.ctrl.shape == batch.target.shape == (5, 64, data.n_features)
    assert batch.pert_emb.shape == (5, 4) and batch.batch_index.shape == (5, 64)
    pert, context = data.groups[0]
    cells = data.group_indices(pert, context)
    ctrl = sampler.matched_controls(context, cells, rng)
    assert len(ctrl) == len(cells)
    assert (data.batches_of(ctrl) == data.batches_of(cells)).all()
    assert (data.obs["context"].to_numpy()[ctrl] == context).all()
    assert data.is_control[ctrl].all()


def test_small_groups_are_sampled_with_replacement(data):
    sampler = sampler_for(data, s=200)
    b = sampler.make_batch([data.groups[0]], np.random.default_rng(1))
    assert b.target.shape[1] == 200 > len(data.group_indices(*data.groups[0]))


def test_eval_cells_are_all_real_cells_with_matched_controls(data):
    sampler = sampler_for(data)
    pert, context = data.groups[3]
    real, ctrl = sampler.eval_cells(pert, context, np.random.default_rng(0))
    np.testing.assert_array_equal(real, data.group_indices(pert, context))
    assert len(ctrl) == len(real) and (data.batches_of(ctrl) == data.batches_of(real)).all()
    assert set(sampler.control_pool(context, data.batches_of(real)[0])) <= set(data.control_indices(context))


def _toy():
    # two batches with very different control levels; the group sits entirely in batch 2
    pert = ["ctrl"] * 4 + ["A"] * 2 + ["A"] * 2
    context = ["x"] * 6 + ["y"] * 2
    batch = ["1", "1", "2", "2", "2", "2", "3", "3"]
    X = np.array([[0.0], [0.0], [10.0], [10.0], [11.0], [11.0], [5.0], [5.0]], np.float32)
    obs = pd.DataFrame({"pert": pert, "context": context, "batch": batch}, index=[f"c{i}" for i in range(8)])
    return PerturbationData(X=X, obs=obs, features=["g"], control_label="ctrl")


def test_database_response_uses_batch_matched_controls():
    toy = _toy()
    toy.obs.loc[["c6", "c7"], "pert"] = "ctrl"  # context y: controls only
    db = ResponseDatabase.from_data(toy, [("A", "x")], np.ones((1, 2)))
    assert db.response[0, 0] == pytest.approx(1.0)  # 11 - 10 (batch 2), not 11 - 5
    assert db.control_mean["x"][0] == pytest.approx(5.0)


def test_exclusion_ids():
    db = ResponseDatabase(perts=["A", "A", "B"], contexts=["x", "y", "x"], n_cells=np.array([3, 3, 3]),
                          embeddings=np.zeros((3, 2), np.float32), response=np.zeros((3, 1), np.float32),
                          control_mean={})
    assert db.exclusion_ids("A", "x", exclude_same_gene=False) == [0]
    assert db.exclusion_ids("A", "x", exclude_same_gene=True) == [0, 1]
    assert db.exclusion_ids("C", "x", exclude_same_gene=True) == []
    assert db.entries_of("A", "y") == [1]


def test_group_indices_point_at_the_groups_cells(data):
    pert_col = data.obs["pert"].to_numpy()
    ctx_col = data.obs["context"].to_numpy()
    for pert, context in data.groups:
        idx = data.group_indices(pert, context)
        assert (pert_col[idx] == pert).all() and (ctx_col[idx] == context).all()
    assert sum(len(data.group_indices(*g)) for g in data.groups) == int((~data.is_control).sum())
