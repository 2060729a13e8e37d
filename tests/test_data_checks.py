"""The data layer's checks of issue 20: control-like labels, split entries, gene-embedding tables
(duplicates, DataFrames, wrong shapes), duplicated feature names, seeds and damaged files."""

import errno
import logging
import pickle
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ptrag.core import api
from ptrag.core.config import DataConfig, check_seed, resolve_config
from ptrag.core.data.dataset import CONTEXT, PERT
from ptrag.core.data.embeddings import ALIASES, BUILTIN_EMBEDDINGS, read_gene_embeddings
from ptrag.core.data.gene_modules import NULL_GENES, all_module_genes
from ptrag.core.data.loading import adata_to_data, read_screen
from ptrag.core.data.readout_genes import readout_genes
from ptrag.core.data.split import read_split
from ptrag.core.data.store import BackedStore
from ptrag.core.data.synth import synth_screen
from ptrag.core.data.validation import control_like_labels, looks_like_control
from ptrag.core.errors import ConfigError, DataError, PtragError, os_error_message
from ptrag.core.files import atomic_write


@pytest.fixture(scope="module")
def tiny():
    return synth_screen("tiny", 0)


def _relabel(adata, label, every=2, line=None):
    """A copy whose controls (of ``line``, when given) are relabelled, every ``every``-th one."""
    out = adata.copy()
    genes = out.obs["gene"].astype(str).to_numpy().copy()
    rows = np.flatnonzero(genes == "non-targeting")
    if line is not None:
        rows = rows[out.obs["cell_line"].astype(str).to_numpy()[rows] == line]
    genes[rows[::every]] = label
    out.obs["gene"] = pd.Categorical(genes)
    return out, len(rows[::every])


# --------------------------------------------------------------------------- control-like labels


@pytest.mark.parametrize("label", [
    "NT", "nt", "NTC", "ntc_3", "NTC-01", "Non-Targeting", "non_targeting", "nontargeting", "NonTargeting",
    "non-targeting_0042", "non-targeting control", "Negative Control", "neg_ctrl", "ctrl", "Ctrl", "CTRL_2", "control",
    "CONTROL-2", "control1", "safe-targeting", "Safe_Targeting", "intergenic", "Scrambled", "scramble", "empty",
    "EMPTY_VECTOR", " NT ",
])
def test_control_spellings_are_flagged(label):
    assert looks_like_control(label)


@pytest.mark.parametrize("label", [
    "NT5E", "NT5C", "NT5", "NTN1", "NTRK1", "NTS", "CTRL", "CTRB1", "CTRC", "GFPT1", "LACTB", "SAFB", "EMP1",
    "CONTROLS", "CEBPE+ctrl", "ctrl+CEBPE", "NT_CEBPE", "GFP", "LacZ", "luciferase", "non-targeting-CEBPE",
])
def test_real_symbols_and_other_labels_are_not(label):
    """Whole labels only: a gene that starts like a control (NT5E), the gene CTRL as HGNC writes it,
    combinations and reporter targets (left out on purpose) are not controls."""
    assert not looks_like_control(label)


def test_no_gene_symbol_ptrag_knows_looks_like_a_control():
    with np.load(BUILTIN_EMBEDDINGS) as z:
        shipped = [str(n) for n in z["names"]]
    symbols = {*shipped, *all_module_genes(), *NULL_GENES, *readout_genes(), *ALIASES, *ALIASES.values()}
    assert len(symbols) > 1000
    assert [s for s in symbols if looks_like_control(s)] == []


@pytest.mark.parametrize("family", ["v3", "grn"])
def test_the_builtin_screens_raise_nothing(family):
    from ptrag.core.data.builtin import builtin_screen

    data = adata_to_data(builtin_screen("tiny", 0, family), DataConfig(), "built-in")
    assert data.info["control_like"] is None


def test_finding_names_label_cells_lines_file_and_column(tiny):
    adata, n = _relabel(tiny, "NT")
    with pytest.raises(DataError) as err:
        adata_to_data(adata, DataConfig(), "screen.h5ad")
    message = str(err.value)
    assert message.startswith("screen.h5ad: obs['gene'] has label(s) that look like controls")
    assert f"'NT': {n} cell(s) in k562, rpe1" in message
    assert "data.control_labels" in message and "data.allow_control_like" in message


def test_control_like_labels_skips_every_declared_label():
    labels = pd.DataFrame({PERT: ["non-targeting", "NT", "ctrl", "control", "TP53"],
                           CONTEXT: ["a", "a", "b", "b", "a"]})
    cfg = SimpleNamespace(control_label="non-targeting", control_labels=["NT"], allow_control_like=["ctrl"])
    assert control_like_labels(labels, cfg) == [("control", 1, ["b"])]


def test_declared_control_labels_are_merged_into_the_controls(tiny, caplog):
    adata, n = _relabel(tiny, "NT")
    plain = adata_to_data(tiny, DataConfig(), "tiny")
    with caplog.at_level(logging.WARNING, logger="ptrag.data"):
        merged = adata_to_data(adata, DataConfig(control_labels=["NT"]), "screen.h5ad")
    assert merged.is_control.sum() == plain.is_control.sum()
    assert merged.groups == plain.groups and "NT" not in merged.perturbations
    assert f"{n} cell(s) labelled 'NT' are counted as controls" in caplog.text


def test_allowed_control_like_labels_stay_perturbations(tiny):
    adata, n = _relabel(tiny, "NT")
    data = adata_to_data(adata, DataConfig(allow_control_like=["NT"]), "screen.h5ad")
    assert "NT" in data.perturbations and sum(data.n_cells_of("NT", c) for c in data.contexts) == n


def test_a_label_cannot_be_both():
    with pytest.raises(ConfigError, match="'NT' are in both data.control_labels and data.allow_control_like"):
        resolve_config(None, sets=["data.control_labels=[NT]", "data.allow_control_like=[NT]"])


def test_inspect_reports_what_run_refuses(tiny, tmp_path):
    adata, _ = _relabel(tiny, "ctrl", line="rpe1")
    adata.write_h5ad(tmp_path / "s.h5ad")
    with pytest.raises(DataError, match="'ctrl': 100 cell"):
        read_screen(tmp_path / "s.h5ad", DataConfig())
    found = api.data.inspect(tmp_path / "s.h5ad")
    assert "'ctrl': 100 cell(s) in rpe1" in found.control_like
    assert "ctrl" in found.data.perturbations  # reported, not changed
    with pytest.raises(PtragError, match="look like controls"):
        api.data.split(tmp_path / "s.h5ad")
    assert api.data.split(tmp_path / "s.h5ad", control_labels=["ctrl"]).split.test


# --------------------------------------------------------------------------- split files


@pytest.fixture(scope="module")
def tiny_data(tiny):
    return adata_to_data(tiny, DataConfig(), "tiny")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("s.toml", '[fewshot."tiny.rpe1"]\ntest = ["CCT2", 5]\n', r'fewshot."tiny.rpe1".test\[1\] is the number 5'),
    ("s.toml", '[fewshot."tiny.rpe1"]\nval = "CCT2"\n', 'fewshot."tiny.rpe1".val is the string \'CCT2\'; write a list'),
    ("s.toml", '[fewshot."tiny.rpe1"]\ntest = [["CCT2"]]\n', r'test\[0\] is a list, not a gene name'),
    ("s.yaml", "fewshot:\n  rpe1:\n    test: [1.5]\n", r'fewshot."rpe1".test\[0\] is the number 1.5'),
    ("s.yaml", "fewshot:\n  rpe1:\n    test:\n", 'test is nothing'),
    ("s.yaml", "fewshot:\n  rpe1:\n    test: {a: 1}\n", "test is a table; write a list of gene names"),
    ("s.yaml", "zeroshot: [rpe1]\n", r"\[zeroshot\] must be a table"),
    ("s.yaml", "training: [1]\nfewshot:\n  rpe1:\n    test: [CCT2]\n", r"training\[0\] is the number 1, not a dataset"),
])
def test_split_entries_are_lists_of_names(tmp_path, tiny_data, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=message) as err:
        read_split(tmp_path / name, tiny_data)
    assert str(err.value).startswith(str(tmp_path / name))


def test_a_well_formed_yaml_split_still_reads(tmp_path, tiny_data):
    (tmp_path / "s.yaml").write_text("training: [tiny]\nfewshot:\n  rpe1:\n    val: []\n    test: [CCT2, MCM5]\n")
    split = read_split(tmp_path / "s.yaml", tiny_data)
    assert split.test == [("CCT2", "rpe1"), ("MCM5", "rpe1")] and split.val == []


# --------------------------------------------------------------------------- gene embeddings

M = np.arange(8, dtype=np.float32).reshape(4, 2)


def test_duplicated_keys_are_an_error_naming_them(tmp_path):
    np.savez(tmp_path / "e.npz", names=np.array(["A", "B", "A", "b"]), embeddings=M)
    with pytest.raises(DataError, match=r"e.npz: 2 gene\(s\) have more than one row \(first: A, b \(= B\);"):
        read_gene_embeddings(tmp_path / "e.npz")


def test_keep_first_keeps_the_first_row_and_says_so(tmp_path, caplog):
    np.savez(tmp_path / "e.npz", names=np.array(["A", "B", "A", "C"]), embeddings=M)
    with caplog.at_level(logging.WARNING, logger="ptrag.data"):
        table = read_gene_embeddings(tmp_path / "e.npz", "first")
    assert table.names == ["A", "B", "C"]
    np.testing.assert_array_equal(table.lookup(["A"])[0][0], M[0])
    assert "kept the first row of each and left out 1 row(s)" in caplog.text


@pytest.mark.parametrize("layout", ["index", "column", "vectors"])
def test_a_pickled_dataframe_loads(tmp_path, layout):
    frame = pd.DataFrame(M, index=["A", "B", "C", "D"])
    value = {"index": frame, "column": frame.reset_index(names="gene"),
             "vectors": pd.DataFrame({"embedding": list(M)}, index=frame.index)}[layout]
    (tmp_path / "e.pkl").write_bytes(pickle.dumps(value))
    table = read_gene_embeddings(tmp_path / "e.pkl")
    assert table.names == ["A", "B", "C", "D"]
    np.testing.assert_array_equal(table.matrix, M)


@pytest.mark.parametrize(("value", "message"), [
    (np.arange(3.0), r"holds a ndarray of shape \(3,\)"),
    ({"A": 0.5, "B": 1.0}, r"the value of 'A' is a single value \(0.5\)"),
    ({"A": [[1.0, 2.0]]}, r"the vector of 'A' has shape \(1, 2\); expected 1-D"),
    (pd.DataFrame({"x": ["a", "b"]}, index=["A", "B"]), "column.s. x of the DataFrame are not numeric"),
])
def test_wrong_pickles_say_the_shape_expected(tmp_path, value, message):
    (tmp_path / "e.pkl").write_bytes(pickle.dumps(value))
    with pytest.raises(DataError, match=message) as err:
        read_gene_embeddings(tmp_path / "e.pkl")
    assert str(err.value).startswith(str(tmp_path / "e.pkl"))


def test_a_one_dimensional_npz_says_the_shape_expected(tmp_path):
    np.savez(tmp_path / "e.npz", names=np.array(["A", "B"]), embeddings=np.arange(2.0))
    with pytest.raises(DataError, match=r"2 gene name\(s\) and embeddings of shape \(2,\); expected one vector"):
        read_gene_embeddings(tmp_path / "e.npz")


def test_a_dataframe_in_a_pt_is_named_not_unpickled(tmp_path):
    import torch

    torch.save(pd.DataFrame(M, index=["A", "B", "C", "D"]), tmp_path / "e.pt")
    with pytest.raises(DataError, match="holds a pandas object.*save the DataFrame as .parquet"):
        read_gene_embeddings(tmp_path / "e.pt")


# --------------------------------------------------------------------------- feature names


def test_duplicated_feature_names_are_an_error(tiny, tmp_path):
    adata = tiny.copy()
    names = adata.var_names.to_numpy().copy()
    names[3] = names[2]
    adata.var_names = names
    adata.write_h5ad(tmp_path / "d.h5ad")
    with pytest.raises(DataError, match=rf"d.h5ad: 1 feature name\(s\) appear more than once .* \(first: {names[2]}\)"):
        read_screen(tmp_path / "d.h5ad", DataConfig())
    with pytest.raises(DataError, match="var_names_make_unique"):
        adata_to_data(adata, DataConfig(), "memory")


def test_duplicates_outside_the_obsm_features_do_not_matter(tiny):
    adata = tiny.copy()
    adata.var["highly_variable"] = True
    adata.var.iloc[1, adata.var.columns.get_loc("highly_variable")] = False
    names = adata.var_names.to_numpy().copy()
    names[1] = names[0]  # the duplicate is not one of the obsm's features
    adata.var_names = names
    adata.obsm["X_hvg"] = np.delete(np.asarray(adata.obsm["X_hvg"]), 1, axis=1)
    data = adata_to_data(adata, DataConfig(), "memory")
    assert data.n_features == tiny.n_vars - 1


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("key", ["seed", "data.seed"])
@pytest.mark.parametrize("value", ["-1", str(2**32), str(2**63)])
def test_config_seeds_are_checked_once(key, value):
    with pytest.raises(ConfigError, match=rf"{key}: must be an integer from 0 to 4294967295 = 2\*\*32 - 1"):
        resolve_config(None, sets=[f"{key}={value}"])
    assert resolve_config(None, sets=[f"{key}={2**32 - 1}"]) is not None


@pytest.mark.parametrize("value", [-1, 2**32, 2**63, 1.5, True, "3"])
def test_api_seeds_raise_ptrag_errors(value, tmp_path):
    with pytest.raises(ConfigError, match=r"--seed: must be an integer from 0 to 4294967295"):
        check_seed(value, "--seed")
    with pytest.raises(PtragError, match="--seed: must be"):
        api.data.synth("tiny", value)
    with pytest.raises(PtragError, match="--seed: must be"):
        api.data.split(tmp_path / "none.h5ad", seed=value)
    assert check_seed(np.int64(7), "--seed") == 7


# --------------------------------------------------------------------------- files


def test_truncated_and_random_files_are_named(tiny, tmp_path):
    tiny.write_h5ad(tmp_path / "whole.h5ad")
    raw = (tmp_path / "whole.h5ad").read_bytes()
    (tmp_path / "cut.h5ad").write_bytes(raw[:1024])
    (tmp_path / "noise.h5ad").write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(DataError, match=rf"cut.h5ad: cannot be read as .h5ad: the file is truncated \(1,024 of "
                                        rf"{len(raw):,} bytes"):
        read_screen(tmp_path / "cut.h5ad", DataConfig())
    with pytest.raises(DataError, match="noise.h5ad: cannot be read as .h5ad: not an HDF5 file"):
        read_screen(tmp_path / "noise.h5ad", DataConfig())


def test_a_write_that_fails_without_a_path_names_the_file(tmp_path):
    def disk_full(tmp):
        raise OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")

    with pytest.raises(OSError) as err:
        atomic_write(tmp_path / "out.h5ad", disk_full)
    assert os_error_message(err.value) == f"{tmp_path / 'out.h5ad'}: {__import__('os').strerror(errno.ENOSPC)}"
    assert not list(tmp_path.iterdir())


def test_a_backed_read_that_fails_names_the_file(tiny, tmp_path):
    tiny.write_h5ad(tmp_path / "s.h5ad")
    store = BackedStore(str(tmp_path / "s.h5ad"), "obsm/nope", np.arange(3), 4, sparse=False,
                        held=np.empty(0, dtype=np.int64))
    with pytest.raises(DataError, match=r"s.h5ad: cannot read rows of obsm/nope \(KeyError"):
        store[0:2]
