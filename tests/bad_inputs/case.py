"""One bad-input case, and the CLI arguments the cases share."""

from __future__ import annotations

import contextlib
import importlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

TINY = ["--set", "data.synth_preset=tiny"]
SMALL = ["--set", "data.synth_preset=tiny", "--set", "model.hidden_dim=16", "--set", "generator.n_layers=1",
         "--set", "generator.n_heads=2", "--set", "data.cell_set_len=8", "--set", "train.batch_size=2",
         "--set", "train.warmup_steps=1", "--set", "compare=[]", "--set", "retriever.k=4", "--device", "cpu"]
PM = ["--preset", "pert-mean", *TINY]
#: the holder record of :func:`held_in_thread`
THREAD_HOLDER = {"pid": 4242, "host": "lab-host", "since": "2026-01-01T12:03:00", "command": "ptrag.run(...)"}


@dataclass
class Case:
    id: str
    args: list[str]  # CLI arguments; {name} is a prepared path, {new} a fresh folder of the case
    expect: str  # a fragment of the one error line, or of the warning when code == 0
    code: int = 1
    plugins: str = ""  # a folder under tests/fixtures put on sys.path (third-party plugins), e.g. "clash"
    why: str = ""
    file_limit: int = 0  # bytes: a file-size limit (ulimit -f) while the command runs, as on a full quota
    held: str = ""  # a folder (a prepared path) that a run in another thread of this process holds meanwhile
    absent: str = ""  # a path the command must not create (what a crafted file would write if it ran code)


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """This process may write no file past ``limit`` bytes for the block: a write beyond fails with
    EFBIG, as ``ulimit -f`` makes it (SIGXFSZ ignored, as ``ptrag``'s entry point does)."""
    import resource

    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
        signal.signal(signal.SIGXFSZ, handler)


@contextlib.contextmanager
def held_in_thread(folder: Path) -> Iterator[None]:
    """``folder`` held for the block by another thread of this process, as a live ``ptrag.run``
    there holds its run folder (core/runs/lock.py)."""
    from ptrag.core.runs import lock

    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        lock.acquire(folder)
        try:  # a fixed record of who holds it, so the documented message is the same in every run
            (folder / lock.HOLDER).write_text(json.dumps(THREAD_HOLDER))
            taken.set()
            done.wait(600)
        finally:
            lock.release(folder)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(60), f"{folder}: the holding thread did not take the lock"
    try:
        yield
    finally:
        done.set()
        thread.join(60)


@contextlib.contextmanager
def fixture_on_path(name: str) -> Iterator[None]:
    """tests/fixtures/<name> (third-party plugin packages) importable for the block; its modules
    are forgotten afterwards, so the next case sees only the plugins it asks for."""
    folder = str(FIXTURES / name)
    loaded = set(sys.modules)
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(folder)
        for module in set(sys.modules) - loaded:
            if (getattr(sys.modules[module], "__file__", "") or "").startswith(folder):
                del sys.modules[module]
        importlib.invalidate_caches()
