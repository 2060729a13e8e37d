"""Untrusted files run no code: pickles through the allow-list unpickler (core/pickles.py),
checkpoints through torch's weights-only loader (core/training/checkpoints.py). Each crafted file
here would create a file if any of its code ran; each test checks that it was not created."""

import copyreg
import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.data.embeddings import read_gene_embeddings
from ptrag.core.errors import ConfigError, DataError
from ptrag.core.genes import read_table, write_table
from ptrag.core.pickles import RefusedGlobal, loads_data
from ptrag.core.runs.experiment import run_experiment
from ptrag.core.training.checkpoints import load_checkpoint, save_checkpoint
from ptrag.core.training.interrupt import crash_after

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["CCT2", "EXOSC8", "POLR2A"]
M = np.arange(12, dtype=np.float32).reshape(3, 4)
SMALL = ["data.synth_preset=tiny", "model.hidden_dim=16", "generator.n_layers=1", "generator.n_heads=2",
         "data.cell_set_len=8", "train.batch_size=2", "train.warmup_steps=1", "compare=[]", "retriever.k=4",
         "device=cpu"]


class RunsCode:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def touch(path):
    return RunsCode(os.system, f"touch {path}")


# --------------------------------------------------------------------------- pickles


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_crafted_pickle_is_refused_before_its_code_runs(tmp_path, protocol):
    target = tmp_path / "written"
    table = {n: [float(v) for v in row] for n, row in zip(NAMES, M, strict=True)}
    (tmp_path / "e.pkl").write_bytes(pickle.dumps({**table, "CCT2": touch(target)}, protocol=protocol))
    with pytest.raises(DataError) as refused:
        read_gene_embeddings(tmp_path / "e.pkl")
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'e.pkl'}: not loaded: the pickle asks for posix.system")
    assert ".npz, .csv, .parquet or a pickle of a plain dict" in message and "\n" not in message
    assert not target.exists()  # pickle.load would have created it
    with pytest.raises(DataError, match="asks for posix.system"):
        read_table(tmp_path / "e.pkl")  # `ptrag genes`' own reader too
    assert not target.exists()


@pytest.mark.parametrize("payload", [
    RunsCode(eval, "1"), RunsCode(getattr, RunsCode(__import__, "os"), "system"),
    RunsCode(shutil.rmtree, "/nonexistent"), RunsCode(pd.read_csv, "/etc/hostname"),
    RunsCode(np.load, "/nonexistent.npy", None, True),
])
def test_any_global_outside_the_allow_list_is_refused(payload):
    with pytest.raises(RefusedGlobal):
        loads_data(pickle.dumps({"A": payload}))


def test_the_copyreg_extension_registry_goes_through_the_allow_list_too(tmp_path):
    copyreg.add_extension("posix", "system", 0x7F0001)
    try:
        data = pickle.dumps({"A": touch(tmp_path / "written")}, protocol=2)
    finally:
        copyreg.remove_extension("posix", "system", 0x7F0001)
    assert b"\x82" in data or b"\x83" in data or b"\x84" in data  # an EXT opcode, not a GLOBAL
    copyreg.add_extension("posix", "system", 0x7F0001)
    try:
        with pytest.raises(RefusedGlobal):
            loads_data(data)
    finally:
        copyreg.remove_extension("posix", "system", 0x7F0001)
    assert not (tmp_path / "written").exists()


def test_persistent_ids_are_refused():
    class Persisting(pickle.Pickler):
        def persistent_id(self, obj):
            return "outside" if obj == "x" else None

    import io

    buffer = io.BytesIO()
    Persisting(buffer).dump({"A": "x"})
    with pytest.raises(pickle.UnpicklingError):
        loads_data(buffer.getvalue())


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("kind", ["lists", "tuples", "arrays", "float32-scalars", "float16-arrays"])
def test_every_plain_layout_of_a_table_still_loads(tmp_path, protocol, kind):
    rows = {"lists": [list(map(float, r)) for r in M], "tuples": [tuple(map(float, r)) for r in M],
            "arrays": list(M), "float32-scalars": [[np.float32(v) for v in r] for r in M],
            "float16-arrays": list(M.astype(np.float16))}[kind]
    (tmp_path / "e.pickle").write_bytes(pickle.dumps(dict(zip(NAMES, rows, strict=True)), protocol=protocol))
    table = read_gene_embeddings(tmp_path / "e.pickle")
    assert table.names == NAMES
    np.testing.assert_array_equal(table.matrix, M)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickled_pandas_tables_of_numbers_still_load(tmp_path, protocol):
    frame = pd.DataFrame(M, index=NAMES)
    for value in (frame, frame.reset_index(names="gene"), pd.Series(list(M), index=NAMES)):
        (tmp_path / "e.pkl").write_bytes(pickle.dumps(value, protocol=protocol))
        table = read_gene_embeddings(tmp_path / "e.pkl")
        assert table.names == NAMES
        np.testing.assert_array_equal(table.matrix, M)


def test_a_table_ptrag_genes_build_writes_reads_back(tmp_path):
    write_table(tmp_path / "t.pkl", NAMES, M, {"model": "x"})
    names, matrix, provenance = read_table(tmp_path / "t.pkl")
    assert names == NAMES and provenance == {"model": "x"}
    np.testing.assert_array_equal(matrix, M)
    assert read_gene_embeddings(tmp_path / "t.pkl").names == NAMES


def test_a_crafted_torch_table_is_refused(tmp_path):
    torch.save({"CCT2": torch.ones(4), "x": touch(tmp_path / "written")}, tmp_path / "e.pt")
    with pytest.raises(DataError, match=r"e.pt: not loaded: it names posix.system, and loading it could run code"):
        read_gene_embeddings(tmp_path / "e.pt")
    assert not (tmp_path / "written").exists()


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A run stopped after its first checkpoint (state preset, 2 of 4 steps)."""
    folder = tmp_path_factory.mktemp("killed") / "r"
    manager = build_manager(entry_points=False)
    cfg = resolve_config(None, preset="state", manager=manager, sets=[
        *SMALL, "train.steps=4", "train.val_every=2", f"output.dir={folder}"])
    torch.set_num_threads(1)
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, manager)
    return folder


def test_a_checkpoint_of_a_run_loads_weights_only(killed):
    checkpoint = load_checkpoint(killed / "checkpoint.pt")
    assert checkpoint["step"] == 2 and isinstance(checkpoint["meta"]["database"]["response"], np.ndarray)
    with torch.serialization.safe_globals([]):  # nothing but what load_checkpoint allows itself
        assert load_checkpoint(killed / "checkpoint.pt")["meta"]["perts"] == checkpoint["meta"]["perts"]


def test_a_crafted_checkpoint_is_refused_and_its_code_does_not_run(killed, tmp_path):
    folder = tmp_path / "r"
    shutil.copytree(killed, folder)
    checkpoint = torch.load(folder / "checkpoint.pt", weights_only=False)  # this test's own file
    checkpoint["note"] = touch(tmp_path / "written")
    torch.save(checkpoint, folder / "checkpoint.pt")
    with pytest.raises(ConfigError) as refused:
        load_checkpoint(folder / "checkpoint.pt")
    assert str(refused.value).startswith(f"{folder / 'checkpoint.pt'}: not loaded: it holds more than tensors, "
                                         "numbers and strings (it names posix.system), and loading that could run "
                                         "code in it")
    assert not (tmp_path / "written").exists()
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    result = CliRunner().invoke(app, ["run", "--resume", str(folder)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: {folder / 'checkpoint.pt'}: not loaded: ")
    assert not (tmp_path / "written").exists()
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # the folder as it was


def test_a_crafted_meta_beside_the_checkpoint_is_refused_and_its_code_does_not_run(killed, tmp_path):
    folder = tmp_path / "r"
    shutil.copytree(killed, folder)
    meta = torch.load(folder / "meta.pt", weights_only=False)  # this test's own file
    meta["note"] = touch(tmp_path / "written")
    torch.save(meta, folder / "meta.pt")
    with pytest.raises(ConfigError, match="meta.pt: not loaded: it holds more than tensors"):
        load_checkpoint(folder / "checkpoint.pt")
    assert not (tmp_path / "written").exists()


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a_plain_pickle_posing_as_a_checkpoint_is_refused(tmp_path, protocol):
    (tmp_path / "checkpoint.pt").write_bytes(pickle.dumps({"model": touch(tmp_path / "written")}, protocol=protocol))
    with pytest.raises(ConfigError, match="checkpoint.pt: not loaded: it holds more than tensors"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert not (tmp_path / "written").exists()


def test_what_a_run_keeps_beside_its_weights_round_trips(tmp_path):
    meta = {"perts": ["A", "B"], "pert_embedding": np.ones((2, 3), np.float32), "n": np.int64(3),
            "database": {"n_cells": np.arange(2), "control_mean": {"k562": np.zeros(4, np.float32)}}}
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": {"w": torch.ones(2)}, "meta": meta, "history": [
        {"step": 0, "val_energy": None}], "stopping": {"best": float("inf"), "reason": ""}})
    back = load_checkpoint(tmp_path / "checkpoint.pt")
    np.testing.assert_array_equal(back["meta"]["pert_embedding"], meta["pert_embedding"])
    assert back["meta"]["n"] == 3 and back["history"][0]["val_energy"] is None
    assert back["meta"]["database"]["control_mean"]["k562"].dtype == np.float32
