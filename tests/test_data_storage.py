"""Storage modes of the expression matrix (data.dtype, data.backed): the same rows, batches and
metrics as float32 in memory (float16 within its rounding), backed mode holding no matrix, and
one-line errors for what a mode cannot do."""

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ptrag.core.components.manager import build_manager
from ptrag.core.config import DataConfig, resolve_config
from ptrag.core.data.cellsets import CellSetSampler, Vocab
from ptrag.core.data.database import ResponseDatabase
from ptrag.core.data.loading import load_screen, read_screen
from ptrag.core.data.store import BackedStore, HalfStore
from ptrag.core.data.synth import synth_screen
from ptrag.core.errors import ConfigError, DataError
from ptrag.core.runs.experiment import run_experiment

HALF = 2.0 ** -11  # float16 keeps 11 significant bits: relative rounding error <= 2^-11 (half an ulp)
MODES = {"float32": {}, "float16": {"dtype": "float16"}, "backed": {"backed": True},
         "backed-float16": {"backed": True, "dtype": "float16"}}


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("storage") / "tiny.h5ad"
    synth_screen("tiny", 0).write_h5ad(path)
    return path


def load(path, mode, **extra):
    return read_screen(path, DataConfig(path=str(path), **MODES[mode], **extra))


def tolerance(mode):
    return {"rtol": HALF, "atol": 0} if "float16" in mode else {"rtol": 0, "atol": 0}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_reads_the_same_rows_as_float32(tiny_file, mode):
    ref = load(tiny_file, "float32").X
    X = load(tiny_file, mode).X
    assert X.shape == ref.shape and X.dtype == np.float32
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(ref), 300)  # unsorted, with repeats
    keys = [idx, idx[::-1].tolist(), slice(5, 40), slice(None, None, 7), 17, -1, np.zeros(0, int),
            rng.random(len(ref)) < 0.1]
    for key in keys:
        got = X[key]
        assert got.dtype == np.float32 and got.shape == ref[key].shape
        np.testing.assert_allclose(got, ref[key], **tolerance(mode))


def test_float16_halves_memory_and_rounds_log1p_values_within_half_an_ulp(tiny_file):
    ref = load(tiny_file, "float32")
    half = load(tiny_file, "float16")
    assert isinstance(half.X, HalfStore) and half.X.nbytes * 2 == ref.X.nbytes
    err = np.abs(half.X[:] - ref.X)
    assert 0 < err.max() <= HALF * ref.X.max()  # rounding happens, and stays within the bound
    assert half.info["memory"] == "float16 in memory"


def test_backed_holds_only_the_controls_and_reads_only_the_rows_asked_for(tiny_file, monkeypatch):
    data = load(tiny_file, "backed")
    X = data.X
    assert isinstance(X, BackedStore) and X.rows_read == 0  # the loading pass keeps no matrix
    n_ctrl = int(data.is_control.sum())
    assert X.held.shape == (n_ctrl, data.n_features)
    assert X.nbytes < load(tiny_file, "float32").X.nbytes / 3  # controls (20% of tiny) + row maps
    reads = []
    monkeypatch.setattr(BackedStore, "_read", lambda self, rows, real=BackedStore._read: reads.append(rows)
                        or real(self, rows))
    pert, context = data.groups[0]
    cells = data.group_indices(pert, context)[:5]
    ctrl = data.control_indices(context)[:3]
    X[np.r_[cells, ctrl, cells[::-1]]]
    assert len(reads) == 1 and reads[0].tolist() == sorted(X.rows[cells].tolist())  # controls from memory
    assert X.rows_read == len(cells)


def test_batches_and_database_are_the_same_in_every_mode(tiny_file):
    ref = load(tiny_file, "float32")
    groups = ref.groups[:6]
    emb = {p: np.ones(4, np.float32) for p in ref.perturbations}
    for mode in MODES:
        data = load(tiny_file, mode)
        db = ResponseDatabase.from_data(data, groups, np.ones((len(groups), 4), np.float32))
        if "backed" in mode:
            assert data.X.rows_read == 0  # means come from the loading pass, not from reading again
        db_ref = ResponseDatabase.from_data(ref, groups, np.ones((len(groups), 4), np.float32))
        # float16 rounding is per value; a mean of differences is bounded by the largest value's
        np.testing.assert_allclose(db.response, db_ref.response, rtol=0,
                                   atol=2 * HALF * ref.X.max() if "float16" in mode else 1e-5)
        batches = []
        for d in (ref, data):
            vocab = Vocab(d.perturbations, d.contexts, emb, sorted(d.obs["batch"].unique()))
            sampler = CellSetSampler(d, groups, vocab, cell_set_len=8)
            batches.append(sampler.sample(4, np.random.default_rng(1)))
        a, b = batches
        assert a.perts == b.perts and torch.equal(a.batch_index, b.batch_index)
        for x, y in ((a.ctrl, b.ctrl), (a.target, b.target)):
            np.testing.assert_allclose(y.numpy(), x.numpy(), **tolerance(mode))


def test_control_cells_are_read_once_and_shared_read_only(tiny_file):
    data = load(tiny_file, "backed")
    context = data.contexts[0]
    block = data.control_cells(context)
    assert data.control_cells(context) is block and not block.flags.writeable
    np.testing.assert_array_equal(block, load(tiny_file, "float32").X[data.control_indices(context)])


FAST = ["model.hidden_dim=16", "data.cell_set_len=8", "train.batch_size=2", "train.steps=3", "train.val_every=3",
        "device=cpu", "compare=[]", "generator.n_layers=1", "generator.n_heads=2",
        "metrics=[w1,energy,mse,pearson-delta]"]


def test_a_run_gives_the_same_metrics_in_every_mode(tiny_file, tmp_path):
    torch.set_num_threads(1)
    manager = build_manager(entry_points=False)
    values = {}
    for mode, keys in {"float32": [], "backed": ["data.backed=true"], "float16": ["data.dtype=float16"]}.items():
        sets = [*FAST, *keys, f"data.path={tiny_file}", f"output.dir={tmp_path / mode}"]
        result = run_experiment(resolve_config(None, preset="ptrag", sets=sets, manager=manager), manager)
        values[mode] = result.metrics.set_index(["pert", "context", "metric"])["value"].sort_index()
    assert values["backed"].index.equals(values["float32"].index)
    np.testing.assert_allclose(values["backed"], values["float32"], rtol=1e-6, atol=0)
    # float16: every input value moves by up to 2^-11 of itself; metrics moved by up to 1.3% (0.0004) here
    assert (values["float16"] != values["float32"]).any()
    np.testing.assert_allclose(values["float16"], values["float32"], rtol=2e-2, atol=1e-3)


def test_backed_reads_chunked_compressed_and_csr_matrices(tmp_path):
    a = synth_screen("tiny", 0)
    a.X = sp.csr_matrix(a.obsm["X_hvg"])
    path = tmp_path / "gz.h5ad"
    a.write_h5ad(path, compression="gzip")
    with h5py.File(path) as f:
        assert f["obsm/X_hvg"].chunks is not None
    ref = load(path, "float32").X
    rows = np.random.default_rng(2).integers(0, len(ref), 50)
    for extra in ({}, {"embed_key": "X"}):
        X = load(path, "backed", **extra).X
        assert X._offset is None  # not the contiguous fast path
        np.testing.assert_array_equal(X[rows], ref[rows])


def test_backed_refuses_csc_and_in_memory_data(tmp_path):
    a = synth_screen("tiny", 0)
    a.X = sp.csc_matrix(a.obsm["X_hvg"])
    path = tmp_path / "csc.h5ad"
    a.write_h5ad(path)
    with pytest.raises(DataError, match=r"csc.h5ad: \.X is stored CSC sparse.*set data.backed=false") as e:
        load(path, "backed", embed_key="X")
    assert "\n" not in str(e.value)
    with pytest.raises(DataError,
                       match=r"built-in tiny dataset \(data seed 0\): data.backed=true .* write it to a file first"):
        load_screen(DataConfig(synth_preset="tiny", backed=True))


def test_float16_refuses_values_beyond_its_range(tmp_path):
    a = synth_screen("tiny", 0)
    a.obsm["X_hvg"][3, 1] = 1e5  # raw counts, say
    path = tmp_path / "big.h5ad"
    a.write_h5ad(path)
    for mode in ("float16", "backed-float16"):
        with pytest.raises(DataError,
                           match=r"values up to 1e\+05, beyond float16's range \(65,504\); set data.dtype=float32"):
            load(path, mode)
    assert load(path, "backed").X.shape[0] == a.n_obs  # float32 holds it


@pytest.mark.parametrize("key, value, expected", [
    ("data.dtype", "float64", r"data.dtype: Input should be 'float32' or 'float16' \(got 'float64'\)"),
    ("data.backed", "sometimes", r"data.backed: Input should be a valid boolean"),
])
def test_bad_storage_keys_are_one_line_errors(key, value, expected):
    with pytest.raises(ConfigError, match=expected) as e:
        resolve_config(None, sets=[f"{key}={value}"])
    assert "\n" not in str(e.value)


def test_store_rejects_column_selection(tiny_file):
    for mode in ("float16", "backed"):
        with pytest.raises(TypeError, match=r"select rows only"):
            load(tiny_file, mode).X[0, 1]

