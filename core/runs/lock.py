"""One ptrag process per folder: a lock held for the life of a run (or a grid, or a prediction).

Two runs writing one folder at once would interleave its files (one run's config.yaml beside the
other's metrics, one log of both), so a process takes the folder's lock before it reads what the
folder holds, and a second process is refused at once (no waiting) with one line naming the
holder. The lock is ``<folder>/.ptrag.lock``, an OS file lock (flock) taken through the
``filelock`` library; the OS releases it when its process dies, however it dies, so a lock left by
a killed run never blocks. Beside it ``<folder>/.ptrag.lock.json`` says who holds it (pid, host,
start time, command): it is only read for the message, never to decide, so a stale one left by a
dead process is simply overwritten. Both files are removed when the lock is released; run folders
treat them as no content of theirs (``folder.LOCK_FILES``).

The lock lives in the folder it guards (not beside it, not in a per-user directory) so that it
guards the folder wherever it is reached from, and from another host on a shared filesystem
that honours flock. Each run folder has its own: a comparator's or an ensemble member's
``<run>/compare/<preset>`` is locked by its own run while the top run holds ``<run>``, so no run
waits on its parent. A hold belongs to the run that took it, i.e. to its thread: that thread may
enter the folder again (a count per folder), while a run in another thread of the same process is
refused exactly as another process is (the OS lock alone would let every thread of its process in).
Under torchrun only rank 0 takes it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..errors import RunFolderError
from ..files import read_json, write_json

LOCK = ".ptrag.lock"
HOLDER = ".ptrag.lock.json"


@dataclass
class _Hold:
    lock: FileLock
    depth: int
    thread: int  # threading.get_ident() of the run that holds it


_HELD: dict[str, _Hold] = {}  # resolved folder -> this process's hold on it
_GUARD = threading.Lock()  # one thread at a time decides who holds what


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def _since(stamp: str) -> str:
    try:
        when = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return "an unknown time"
    return when.strftime("%H:%M" if when.date() == datetime.now().date() else "%Y-%m-%d %H:%M")


def describe_holder(folder: Path) -> str:
    """``pid 1234 on host h, since 12:03`` from the sidecar (what a refusal names)."""
    info: dict[str, Any] = read_json(folder / HOLDER) or {}
    pid, host = info.get("pid"), info.get("host")
    if not isinstance(pid, int) or not host:
        return "its pid is not recorded yet"
    if host == socket.gethostname() and not _alive(pid):  # a process it started still holds the lock
        return f"started by pid {pid} on host {host}, which has exited, since {_since(info.get('since'))}"
    return f"pid {pid} on host {host}, since {_since(info.get('since'))}"


def _write_holder(folder: Path) -> None:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    write_json(folder / HOLDER, {"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": datetime.now().isoformat(timespec="seconds"), "command": command[:300]})


def _take(folder: Path, flag: str) -> FileLock:
    """The folder's OS lock, taken now or refused in one line naming the holder."""
    lock = FileLock(str(folder / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderError(f"{flag} {folder}: another ptrag process ({describe_holder(folder)}) is running in "
                             f"this folder; wait for it or choose another --out") from None
    except PermissionError:
        raise RunFolderError(f"{flag} {folder}: the folder is not writable") from None
    except OSError as exc:
        raise RunFolderError(f"{flag} {folder}: cannot lock the folder ({exc.strerror or exc})") from None
    return lock


def acquire(folder: Path, flag: str = "--out") -> None:
    """Take ``folder``'s lock (an existing folder), or refuse at once in one line naming the holder."""
    key = str(folder.resolve())
    with _GUARD:
        held = _HELD.get(key)
        if held is not None and held.thread == threading.get_ident():
            held.depth += 1
            return
        if held is not None:
            raise RunFolderError(f"{flag} {folder}: another ptrag run ({describe_holder(folder)}, in another thread "
                                 "of this process) is running in this folder; wait for it or choose another --out")
        _HELD[key] = _Hold(_take(folder, flag), 1, threading.get_ident())
    try:
        _write_holder(folder)
    except BaseException:
        release(folder)
        raise


def release(folder: Path) -> None:
    """Give one hold back; the last one removes the sidecar and the lock file, then unlocks."""
    key = str(folder.resolve())
    with _GUARD:
        hold = _HELD.get(key)
        if hold is None or hold.thread != threading.get_ident():
            return  # not this run's to give back
        hold.depth -= 1
        if hold.depth:
            return
        del _HELD[key]
        try:  # removed while still locked, so no other process can have taken this lock file meanwhile
            for name in (HOLDER, LOCK):
                with contextlib.suppress(OSError):
                    (folder / name).unlink()
        finally:
            hold.lock.release()


def holds(folder: Path) -> bool:
    """Whether a run of this process (any thread) holds ``folder``'s lock."""
    return str(folder.resolve()) in _HELD


@contextlib.contextmanager
def locked(folder: Path, flag: str = "--out") -> Iterator[None]:
    """Hold ``folder`` (which exists) for the block, released on every way out of it."""
    acquire(folder, flag)
    try:
        yield
    finally:
        release(folder)
