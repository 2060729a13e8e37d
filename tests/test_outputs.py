"""predictions.h5ad / real.h5ad meet cell-eval's contract; retrieval diagnostics."""

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ptrag.core.config import DataConfig
from ptrag.core.data.dataset import CONTEXT, PERT
from ptrag.core.data.loading import load_screen
from ptrag.core.errors import DataError
from ptrag.core.evaluation.scoring import GroupPrediction
from ptrag.core.runs.cells import write_cell_eval_files
from ptrag.core.runs.trace import gene_modules_for, retrieval_summary, write_retrieval


@pytest.fixture(scope="module")
def tiny():
    return load_screen(DataConfig(synth_preset="tiny"))


def _predictions(data, shift):
    rows = data.obs.groupby([PERT, CONTEXT], observed=True).indices
    groups = [g for g in data.groups if g[1] == "rpe1"][:3]
    rng = np.random.default_rng(0)
    out = []
    for pert, context in groups:
        real = data.X[rows[(pert, context)]]
        ctrl_idx = rng.choice(data.control_indices(context), len(real))
        out.append(GroupPrediction(pert, context, data.X[ctrl_idx] + shift, real,
                                   data.X[data.control_indices(context)], ctrl_idx))
    return out


def test_prediction_files_follow_the_input_schema_and_cell_eval_contract(tmp_path, tiny):
    preds = _predictions(tiny, shift=-1.0)  # negative values: must be clipped and reported
    info = write_cell_eval_files(tmp_path, preds, tiny)
    pred, real = ad.read_h5ad(tmp_path / "predictions.h5ad"), ad.read_h5ad(tmp_path / "real.h5ad")
    assert list(real.obs.columns) == ["gene", "cell_line", "gem_group"]
    assert list(pred.obs.columns) == ["gene", "cell_line", "gem_group", "ctrl_cell_barcode"]  # + each cell's control
    assert list(pred.var_names) == list(real.var_names) == tiny.features
    assert set(pred.obs["gene"]) == set(real.obs["gene"]) == {p.pert for p in preds} | {"non-targeting"}
    n_ctrl = len(tiny.control_indices("rpe1"))
    assert (pred.obs["gene"] == "non-targeting").sum() == n_ctrl == (real.obs["gene"] == "non-targeting").sum()
    assert set(pred.obs.loc[pred.obs["gene"] == "non-targeting", "cell_line"]) == {"rpe1"}
    assert pred.X.min() >= 0 and pred.X.max() < 15 and real.X.max() < 15
    assert info["clipped_values"] > 0 and pred.uns["ptrag"]["clipped_values"] == info["clipped_values"]
    assert pred.obs_names.is_unique and real.obs_names.is_unique
    # the held-out real cells are the data's own cells of each group, with their labels
    for p in preds:
        mask = (real.obs["gene"] == p.pert).to_numpy()
        np.testing.assert_allclose(np.sort(real.X[mask].sum(1)), np.sort(p.real.sum(1)), rtol=1e-5)
        # predicted cells carry the batch and the name of their matched control cells
        assert pred.obs.loc[pred.obs["gene"] == p.pert, "gem_group"].notna().all()
        named = pred.obs.loc[pred.obs["gene"] == p.pert, "ctrl_cell_barcode"].astype(str).tolist()
        assert named == list(tiny.obs.index[p.ctrl_index].astype(str))
    controls = pred.obs[pred.obs["gene"] == "non-targeting"]
    assert (controls["ctrl_cell_barcode"].astype(str) == controls.index).all()  # a control cell is its own


def test_no_clipping_when_values_are_in_range(tmp_path, tiny):
    info = write_cell_eval_files(tmp_path, _predictions(tiny, shift=0.0), tiny)
    assert info["clipped_values"] == 0


def test_no_predictions_is_a_clear_error(tmp_path, tiny):
    with pytest.raises(DataError, match="no predictions"):
        write_cell_eval_files(tmp_path, [], tiny)


def _trace():
    rows = []
    for query in ("RPL3", "OR4F5"):
        for rank, (cand, w) in enumerate([("RPL4", 1.0), ("RPL5", 1.0), ("PSMA1", 0.0), ("MED1", 1.0)]):
            rows.append({"pert": query, "context": "rpe1", "rank": rank, "candidate_pert": cand,
                         "candidate_context": "k562", "stage1_score": 0.9 - rank / 10, "keep_weight": w})
    return pd.DataFrame(rows)


def test_retrieval_summary_counts_shared_biology(tmp_path):
    summary = write_retrieval(tmp_path, _trace())
    s = summary["rpe1"]
    assert s["queries"] == 2 and s["candidates"] == 8
    assert s["keep_ratio"] == pytest.approx(6 / 8)
    # RPL3 (large ribosome) keeps RPL4, RPL5, MED1: 2 of 3 share its module; OR4F5 has no module
    assert s["kept_same_module"] == pytest.approx(2 / 3)
    assert s["candidates_same_module"] == pytest.approx(2 / 4)
    assert s["top_kept"][0]["times_kept"] == 2
    table = pd.read_csv(tmp_path / "retrieval.csv")
    assert {"query_module", "candidate_module"} <= set(table.columns) and len(table) == 8
    assert json.loads((tmp_path / "retrieval_summary.json").read_text())["rpe1"]["queries"] == 2


def test_retrieval_uses_the_datasets_ground_truth_modules(tmp_path):
    class Data:
        uns = {"ptrag_synth": {"gene_module": {"RPL3": "m1", "PSMA1": "m1", "RPL4": "m2"}}}

    s = retrieval_summary(_trace().head(4), module=gene_modules_for(Data()))
    assert s["rpe1"]["candidates_same_module"] == pytest.approx(1 / 4)


def test_retrieval_trace_missing_columns_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="keep_weight"):
        write_retrieval(tmp_path, _trace().drop(columns=["keep_weight"]))
