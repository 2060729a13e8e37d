"""One ptrag process per folder (core/runs/lock.py), and a failed invocation removing exactly what
it created (core/runs/folder.py: ``occupied``)."""

import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.errors import DataError, RunFolderError
from ptrag.core.runs import lock
from ptrag.core.runs.experiment import run_experiment
from ptrag.core.runs.fingerprints import run_identity
from ptrag.core.runs.folder import inspect_folder, occupied
from ptrag.core.training.distributed import Dist
from ptrag.core.training.interrupt import crash_after

pytestmark = pytest.mark.usefixtures("one_thread")

PM = ["--preset", "pert-mean", "--set", "data.synth_preset=tiny"]
SMALL = ["data.synth_preset=tiny", "model.hidden_dim=16", "generator.n_layers=1", "generator.n_heads=2",
         "data.cell_set_len=8", "train.batch_size=2", "train.warmup_steps=1", "compare=[]", "device=cpu"]
HOLD = """
import sys, time
from pathlib import Path
from ptrag.core.runs.lock import acquire
acquire(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()  # until the test closes it (or kills this process)
"""


@pytest.fixture
def holder():
    """Start a separate process that holds a folder's lock; every one started is stopped after."""
    started = []

    def start(folder):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def free(folder) -> bool:
    """Whether another process could take the folder's lock now."""
    code = (f"from pathlib import Path; from ptrag.core.runs.lock import acquire, release; f = Path({str(folder)!r}); "
            "acquire(f); release(f)")
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_a_second_run_is_refused_at_once_in_one_line_naming_the_folder_and_holder(tmp_path, holder):
    folder = tmp_path / "r"
    manager = build_manager(entry_points=False)
    cfg = resolve_config(None, preset="state", manager=manager, sets=[
        *SMALL, "train.steps=4", "train.val_every=2", f"output.dir={folder}"])
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, manager)  # a run to resume, with its checkpoint
    proc = holder(folder)
    before = digest(folder)
    assert lock.HOLDER in {p.name for p in folder.iterdir()}
    started = time.perf_counter()
    with pytest.raises(RunFolderError) as refused:
        lock.acquire(folder)
    assert time.perf_counter() - started < 1  # refused, not waited for
    assert f"another ptrag process (pid {proc.pid} on host {socket.gethostname()}, since " in str(refused.value)
    result = CliRunner().invoke(app, ["run", "--resume", str(folder)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: --resume {folder}: another ptrag process (pid {proc.pid} on host ")
    assert line.endswith("is running in this folder; wait for it or choose another --out")
    assert digest(folder) == before  # not a byte changed, the holder's own record included
    proc.kill()
    proc.wait(10)  # the holder dies: its lock file and record stay behind, stale
    assert lock.LOCK in {p.name for p in folder.iterdir()}
    result = CliRunner().invoke(app, ["run", "--resume", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "metrics.json").is_file() and not {lock.LOCK, lock.HOLDER} & {p.name for p in folder.iterdir()}


def test_a_stale_holder_record_alone_never_blocks(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    record = {"pid": os.getppid(), "host": socket.gethostname(), "since": "2026-01-01T12:00:00", "command": "x"}
    (folder / lock.HOLDER).write_text(json.dumps(record))  # names a live process, which holds no lock
    result = CliRunner().invoke(app, ["run", *PM, "--out", str(folder)])
    assert result.exit_code == 0, result.output
    assert not (folder / lock.HOLDER).exists()


def test_the_lock_is_released_on_every_way_out(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    for exc in (DataError("bad"), KeyboardInterrupt(), RuntimeError("a bug")):
        with pytest.raises(type(exc)), occupied(folder):
            assert not free(folder)
            raise exc
        assert free(folder) and not any(folder.iterdir())
    with occupied(folder):
        pass
    assert free(folder)


def test_a_process_may_reenter_a_folder_it_holds(tmp_path):
    lock.acquire(tmp_path)
    lock.acquire(tmp_path)  # a caller holding its folder enters it again: no deadlock on itself
    lock.release(tmp_path)
    assert lock.holds(tmp_path) and not free(tmp_path)
    lock.release(tmp_path)
    assert not lock.holds(tmp_path) and free(tmp_path)


def test_comparator_runs_hold_their_own_folder_inside_the_held_top_run(tmp_path, monkeypatch):
    import ptrag.core.runs.compare as compare

    seen = []
    real = compare.run_or_reuse

    def run_or_reuse(cfg, *args, **kwargs):
        seen.append(lock.holds(tmp_path / "r"))
        result = real(cfg, *args, **kwargs)
        return result

    monkeypatch.setattr(compare, "run_or_reuse", run_or_reuse)
    result = CliRunner().invoke(app, ["run", *PM, "--set", "compare=[control]", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert seen == [True] and (tmp_path / "r" / "compare" / "control" / "metrics.json").is_file()
    assert not list((tmp_path / "r").rglob(".ptrag.lock*"))


def test_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    import ptrag.core.training.distributed as distributed

    monkeypatch.setattr(distributed, "broadcast", lambda value, dist, src=0: ("", None))  # rank 0's answer: ok
    with occupied(tmp_path / "r", dist=Dist(rank=1, world_size=2)):
        assert not (tmp_path / "r").exists() and not lock.holds(tmp_path / "r")


def test_lock_files_are_no_content_of_a_folder(tmp_path):
    result = CliRunner().invoke(app, ["run", *PM, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0
    identity = run_identity(resolve_config(None, preset="pert-mean", sets=["data.synth_preset=tiny"],
                                           manager=build_manager(entry_points=False)))
    for folder in (tmp_path / "r", tmp_path / "empty"):
        folder.mkdir(exist_ok=True)
        (folder / lock.LOCK).touch()
        (folder / lock.HOLDER).write_text("{}")
    assert inspect_folder(tmp_path / "empty", identity).kind == "empty"
    assert inspect_folder(tmp_path / "r", identity).kind == "finished"
    refused = CliRunner().invoke(app, ["run", *PM, "--out", str(tmp_path / "r")])
    assert refused.exit_code == 1 and "already holds this finished run" in refused.stderr


# --------------------------------------------------------------------------- failure cleanup


def test_a_failure_removes_only_what_this_invocation_created(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "kept.txt").write_text("was here")
    (folder / "replaced.txt").write_text("was here")
    with pytest.raises(DataError), occupied(folder):
        (folder / "new.txt").write_text("mine")
        (folder / "sub").mkdir()
        (folder / "replaced.txt").unlink()
        (folder / "replaced.txt").write_text("mine")
        raise DataError("late")
    assert sorted(p.name for p in folder.iterdir()) == ["kept.txt"]
    (folder / "replaced.txt").write_text("was here")
    with pytest.raises(DataError), occupied(folder, keep_changed=True):  # a resumed run: its progress stays
        (folder / "replaced.txt").write_text("progress")
        (folder / "new.txt").write_text("mine")
        raise DataError("late")
    assert sorted(p.name for p in folder.iterdir()) == ["kept.txt", "replaced.txt"]
    with pytest.raises(DataError), occupied(tmp_path / "a" / "b"):
        (tmp_path / "a" / "b" / "x").write_text("mine")
        raise DataError("late")
    assert not (tmp_path / "a").exists()  # every folder it created goes


def test_a_failed_run_in_an_empty_folder_leaves_it_empty(tmp_path):
    (tmp_path / "r").mkdir()
    result = CliRunner().invoke(app, ["run", "--preset", "state", *[a for s in SMALL[:-1] for a in ("--set", s)],
                                      "--device", "cpu", "--steps", "4", "--set", "train.val_every=2",
                                      "--set", "train.lr=1e6", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "training diverged" in result.stderr
    assert (tmp_path / "r").is_dir() and not any((tmp_path / "r").iterdir())


def test_ctrl_c_keeps_the_checkpoint_to_resume_from(tmp_path):
    manager = build_manager(entry_points=False)
    cfg = resolve_config(None, preset="state", manager=manager, sets=[
        *SMALL, "train.steps=4", "train.val_every=2", f"output.dir={tmp_path / 'r'}"])
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, manager)
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"checkpoint.pt", "config.yaml", "log.jsonl"} <= names and not {lock.LOCK, lock.HOLDER} & names
    assert run_experiment(cfg, manager, resume=True).training["steps"] == 4


# --------------------------------------------------------------------------- threads


def test_a_second_run_in_another_thread_is_refused_like_another_process(tmp_path):
    """Two ``ptrag.run`` threads into one folder: the second is refused at once, and neither its
    refusal nor its cleanup touches the first run's files, which finishes as if alone."""
    import threading

    import ptrag

    folder, inside, go_on, outcome = tmp_path / "r", threading.Event(), threading.Event(), {}

    def log(message):  # the first run pauses here, holding its folder
        if not inside.is_set() and message.startswith("data:"):
            inside.set()
            assert go_on.wait(60)

    def first():
        try:
            outcome["first"] = ptrag.run(preset="pert-mean", set=["data.synth_preset=tiny"], out=folder, log=log,
                                         comparisons=False)
        except BaseException as exc:  # reported by the assertions below
            outcome["first"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(60)
        held = digest(folder)
        with pytest.raises(RunFolderError) as refused:
            ptrag.run(preset="pert-mean", set=["data.synth_preset=tiny"], out=folder, comparisons=False,
                      log=lambda message: None)
        assert f"--out {folder}: another ptrag run (pid {os.getpid()} on host " in str(refused.value)
        assert "in another thread of this process) is running in this folder" in str(refused.value)
        assert digest(folder) == held  # the refused run neither wrote nor removed a file
        assert lock.holds(folder) and not free(folder)
    finally:
        go_on.set()
        thread.join(120)
    assert not isinstance(outcome["first"], BaseException), outcome["first"]
    assert (folder / "metrics.json").is_file() and free(folder)


def test_a_thread_cannot_release_a_hold_of_another(tmp_path):
    import threading

    lock.acquire(tmp_path)
    try:
        other = threading.Thread(target=lock.release, args=(tmp_path,))
        other.start()
        other.join(10)
        assert lock.holds(tmp_path) and not free(tmp_path)  # still held by this thread's run
        errors = []

        def take():
            try:
                lock.acquire(tmp_path)
            except RunFolderError as exc:
                errors.append(str(exc))

        other = threading.Thread(target=take)
        other.start()
        other.join(10)
        assert len(errors) == 1 and "in another thread of this process" in errors[0]
    finally:
        lock.release(tmp_path)
    assert not lock.holds(tmp_path) and free(tmp_path)
