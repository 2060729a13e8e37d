"""A write that fails (a full disk: ENOSPC; a file-size limit: EFBIG) is one line naming the file,
its temporary file is removed, and a run folder the command created goes (core/files.py,
core/runs/folder.py ``occupied``). A full disk is simulated: a file-size limit in a subprocess,
or the failing call patched to raise the OSError the OS would."""

import errno
import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core import files
from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.runs.experiment import run_experiment
from ptrag.core.training.interrupt import crash_after

pytestmark = pytest.mark.usefixtures("one_thread")

PM = ["--preset", "pert-mean", "--set", "data.synth_preset=tiny"]
STATE = ["--preset", "state", "--set", "data.synth_preset=tiny", "--set", "model.hidden_dim=16", "--set",
         "generator.n_layers=1", "--set", "generator.n_heads=2", "--set", "data.cell_set_len=8", "--set",
         "train.batch_size=2", "--set", "train.warmup_steps=1", "--set", "compare=[]", "--device", "cpu"]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def one_error(result) -> str:
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    return line


def failing(monkeypatch, suffix: str, code: int = errno.ENOSPC):
    """Writes of files whose name ends with ``suffix`` fail as a full disk makes them, midway."""
    real = Path.write_bytes

    def write_bytes(self, data):
        if self.name.endswith(suffix):
            with self.open("wb") as fh:
                fh.write(bytes(data)[: len(data) // 2])  # half of it, then the disk is full
            raise OSError(code, os.strerror(code))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_synth_past_a_file_size_limit_is_one_line_not_a_crash(tmp_path):
    """h5py crashed the process (SIGSEGV) when HDF5's writes failed, leaving half a file."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))

    out = tmp_path / "new" / "tiny.h5ad"
    done = subprocess.run([sys.executable, "-m", "ptrag", "data", "synth", "--preset", "tiny", "-o", str(out)],
                          capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])  # not -11 (SIGSEGV), not -25 (SIGXFSZ)
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        f"error: -o {out}: cannot write the file (File too large)"]
    assert not (tmp_path / "new").exists()  # no partial file, nor the folder made for it


def test_a_full_disk_while_writing_the_checkpoint_removes_the_new_run_folder(tmp_path, monkeypatch):
    failing(monkeypatch, "checkpoint.partial.pt")
    line = one_error(invoke("run", *STATE, "--steps", "2", "--out", tmp_path / "r"))
    assert line == f"error: {tmp_path / 'r' / 'checkpoint.pt'}: No space left on device"
    assert not (tmp_path / "r").exists()


def test_a_full_disk_while_resuming_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    manager = build_manager(entry_points=False)
    sets = [s for s in STATE[2:] if s not in ("--set", "--device", "cpu")]
    cfg = resolve_config(None, preset="state", manager=manager, sets=[
        *sets, "device=cpu", "train.steps=4", "train.val_every=2", f"output.dir={tmp_path / 'r'}"])
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, manager)
    folder = tmp_path / "r"
    before = {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}
    failing(monkeypatch, "checkpoint.partial.pt")
    line = one_error(invoke("run", "--resume", folder))
    assert line == f"error: {folder / 'checkpoint.pt'}: No space left on device"
    after = {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}
    assert after["checkpoint.pt"] == before["checkpoint.pt"] and not [n for n in after if ".partial" in n]
    monkeypatch.undo()
    assert invoke("run", "--resume", folder).exit_code == 0  # still resumable


def test_a_full_disk_before_the_predictions_is_one_line_and_nothing_stays(tmp_path, monkeypatch):
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: SimpleNamespace(free=10_000))
    line = one_error(invoke("run", *PM, "--out", tmp_path / "r"))
    assert line == f"error: {tmp_path / 'r' / 'predictions.h5ad'}: No space left on device"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"), (errno.EFBIG, "File too large")])
def test_a_failed_json_write_names_the_file_and_leaves_no_partial(tmp_path, monkeypatch, code, words):
    real = Path.write_text

    def write_text(self, text, *args, **kwargs):
        if self.name.startswith(".metrics.partial"):
            real(self, text[: len(text) // 2])
            raise OSError(code, os.strerror(code))
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    line = one_error(invoke("run", *PM, "--out", tmp_path / "r"))
    assert line == f"error: {tmp_path / 'r' / 'metrics.json'}: {words}"
    assert not (tmp_path / "r").exists()


def test_room_is_checked_against_the_file_size_limit_and_the_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda what: (1000, resource.RLIM_INFINITY))
    with pytest.raises(OSError) as refused:
        files.require_room(tmp_path / "x.h5ad", 5000)
    assert refused.value.errno == errno.EFBIG and refused.value.filename == str(tmp_path / "x.h5ad")
    files.require_room(tmp_path / "x.h5ad", 500)
