"""Loading and validation: every bad input fails (or warns) with one line naming file and fix,
and nothing but the reported cells is dropped."""

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ptrag.core.config import DataConfig
from ptrag.core.data.loading import adata_to_data, load_screen, read_screen
from ptrag.core.errors import DataError


def make_adata(n_per=12, perts=("A", "B", "C"), lines=("k562", "rpe1"), n_ctrl=20, g=8, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for line in lines:
        rows += [("non-targeting", line)] * n_ctrl
        for p in perts:
            rows += [(p, line)] * n_per
    obs = pd.DataFrame(rows, columns=["gene", "cell_line"])
    obs["gem_group"] = (np.arange(len(obs)) % 2 + 1).astype(str)
    obs.index = [f"c{i}" for i in range(len(obs))]
    X = np.log1p(rng.poisson(2.0, (len(obs), g))).astype(np.float32)
    var = pd.DataFrame({"highly_variable": np.ones(g, bool)}, index=[f"G{i}" for i in range(g)])
    a = ad.AnnData(X=sp.csr_matrix(X), obs=obs, var=var)
    a.obsm["X_hvg"] = X.copy()
    return a


def write(a, tmp_path, name="s.h5ad"):
    path = tmp_path / name
    a.write_h5ad(path)
    return path


def test_sparse_X_and_dense_obsm_read_the_same(tmp_path):
    a = make_adata()
    dense_only = a.copy()
    dense_only.X = None
    sparse_path = write(a, tmp_path, "sparse.h5ad")
    dense_path = write(dense_only, tmp_path, "dense.h5ad")
    d1 = read_screen(sparse_path, DataConfig(embed_key="X"))
    d2 = read_screen(dense_path, DataConfig())
    assert d1.info["storage"] == "CSR sparse" and d2.info["storage"] == "dense"
    np.testing.assert_array_equal(d1.X, d2.X)
    assert d1.X.dtype == np.float32 and d1.X.flags.c_contiguous
    assert d1.features == d2.features == [f"G{i}" for i in range(8)]
    assert len(d1.groups) == 6 and d1.contexts == ["k562", "rpe1"]
    assert list(d1.obs.index[:3]) == ["c0", "c1", "c2"]


def test_csc_and_float64_inputs(tmp_path):
    a = make_adata()
    X = a.obsm["X_hvg"].astype(np.float64)
    a.X = sp.csc_matrix(X)
    a.obsm["X_hvg"] = X
    path = write(a, tmp_path)
    d1 = read_screen(path, DataConfig(embed_key="X"))
    d2 = read_screen(path, DataConfig())
    np.testing.assert_allclose(d1.X, d2.X)
    assert d1.X.dtype == np.float32


def test_missing_column_lists_columns(tmp_path):
    path = write(make_adata(), tmp_path)
    with pytest.raises(DataError) as e:
        read_screen(path, DataConfig(pert_col="guide_target"))
    msg = str(e.value)
    assert str(path) in msg and "'guide_target'" in msg and "gene, cell_line, gem_group" in msg
    assert "\n" not in msg


def test_unknown_expression_key_lists_available(tmp_path):
    a = make_adata()
    a.obsm["X_pca"] = np.zeros((a.n_obs, 2), np.float32)
    path = write(a, tmp_path)
    with pytest.raises(DataError, match=r"no expression under obsm\['X_scvi'\]; available: X, X_hvg, X_pca"):
        read_screen(path, DataConfig(embed_key="X_scvi"))


def test_cell_line_without_controls(tmp_path):
    a = make_adata()
    keep = ~((a.obs.gene == "non-targeting") & (a.obs.cell_line == "rpe1")).to_numpy()
    path = write(a[keep].copy(), tmp_path)
    with pytest.raises(DataError, match=r"cell line\(s\) rpe1 .* have no control cells"):
        read_screen(path, DataConfig())


def test_no_control_label_at_all_names_labels(tmp_path):
    path = write(make_adata(), tmp_path)
    with pytest.raises(DataError,
                       match=r"no control cells: obs\['gene'\] has no 'NTC'; most frequent labels: .*non-targeting"):
        read_screen(path, DataConfig(control_label="NTC"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_are_errors_naming_cells(tmp_path, bad):
    a = make_adata()
    a.obsm["X_hvg"][5, 2] = bad
    path = write(a, tmp_path)
    with pytest.raises(DataError, match=r"obsm\['X_hvg'\] has 1 NaN/inf value\(s\) \(cells: c5\)"):
        read_screen(path, DataConfig())


def test_negative_values_warn_and_keep_everything(tmp_path, caplog):
    a = make_adata()
    a.obsm["X_hvg"][:3, 0] = -1.5
    path = write(a, tmp_path)
    with caplog.at_level(logging.WARNING, logger="ptrag.data"):
        data = read_screen(path, DataConfig())
    assert len(data.obs) == a.n_obs
    assert any("3 negative value(s) (min -1.5)" in n and "log-normalised" in n for n in data.notes)
    assert any("negative" in r.message for r in caplog.records)


def test_small_groups_are_dropped_reported_and_counted(tmp_path):
    a = make_adata()
    small = ((a.obs.gene == "B") & (a.obs.cell_line == "rpe1")).to_numpy()
    keep = ~small
    keep[np.flatnonzero(small)[:4]] = True  # B/rpe1 keeps 4 cells
    path = write(a[keep].copy(), tmp_path)
    data = read_screen(path, DataConfig(min_cells=5))
    assert ("B", "rpe1") not in data.groups and ("B", "k562") in data.groups
    assert len(data.obs) == int(keep.sum()) - 4  # exactly those 4 cells, nothing else
    assert data.info["dropped_groups"] == 1 and data.info["dropped_cells"] == 4
    assert any("dropped 1 perturbation group(s) with fewer than 5 cells (4 cells; first: B/rpe1 (4))" in n
               for n in data.notes)
    # and the rows kept are the right ones
    kept = a[keep].copy()
    rest = ~((kept.obs.gene == "B") & (kept.obs.cell_line == "rpe1")).to_numpy()
    np.testing.assert_array_equal(data.X, kept[rest].obsm["X_hvg"])


def test_empty_labels_are_errors(tmp_path):
    a = make_adata()
    a.obs["gene"] = a.obs["gene"].astype(object)
    a.obs.iloc[7, 0] = ""
    path = write(a, tmp_path)
    with pytest.raises(DataError, match=r"1 cell\(s\) have no value in obs\['gene'\] \(first: c7\)"):
        read_screen(path, DataConfig())


def test_missing_batch_column_is_a_note_not_an_error(tmp_path):
    a = make_adata()
    del a.obs["gem_group"]
    data = read_screen(write(a, tmp_path), DataConfig())
    assert "batch" not in data.obs and any("no batch column 'gem_group'" in n for n in data.notes)


def test_not_an_h5ad_and_missing_file(tmp_path):
    bad = tmp_path / "x.h5ad"
    bad.write_text("hello")
    with pytest.raises(DataError, match="cannot be read as .h5ad"):
        read_screen(bad, DataConfig())
    with pytest.raises(DataError, match="data file not found"):
        read_screen(tmp_path / "nope.h5ad", DataConfig())


def test_custom_columns_and_in_memory_path():
    a = make_adata()
    a.obs = a.obs.rename(columns={"gene": "target", "cell_line": "line"})
    a.obs["target"] = a.obs["target"].replace({"non-targeting": "ctrl"})
    data = adata_to_data(a, DataConfig(pert_col="target", context_col="line", control_label="ctrl"), "mem")
    assert len(data.control_indices("k562")) == 20 and data.columns["pert"] == "target"


def test_builtin_tiny_loads_with_default_config():
    data = load_screen(DataConfig(synth_preset="tiny"))
    assert data.notes == [] and len(data.contexts) >= 2 and data.truth["preset"] == "tiny"
    assert data.features[0].isupper() and not data.features[0].startswith("HVG")
