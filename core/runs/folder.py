"""Run folders that never lie: one rule for reusing a folder.

A folder holds exactly one run (or one `ptrag predict` output); ``fingerprint.json``
(:mod:`.fingerprints`) records what made it.

:meth:`RunFolder.claim` decides before any data is read whether a folder may be used:

- absent or empty: a new run (a folder that cannot be created fails now, in one line);
- the same configuration, stopped before its first checkpoint: started again (its own files go);
- the same configuration with a checkpoint but no metrics.json: only ``resume`` continues it;
- ``resume``: the folder's config.yaml with only the keys in :data:`RESUME_MAY_CHANGE` changed;
- anything else, a finished run of the same configuration included, is refused in one line that
  names the differing keys, unless ``overwrite``, which clears a run folder (never a folder that
  holds no ptrag run).

:meth:`RunFolder.begin`, once the data is read, checks its content against the folder's (a resumed
run must see the same data and split) and writes config.yaml and fingerprint.json. Result files
are written under a temporary name and renamed (``ptrag.core.files``), so a crash never leaves
half a file, and metrics.json is written last: its presence marks a finished run.

:func:`occupied` holds a folder for one invocation: it creates it if needed, takes its lock
(:mod:`.lock`: a second process is refused at once), and when the invocation fails with a ptrag
or filesystem error it removes exactly what that invocation created: every entry that is new or
replaced since it took the folder (a resumed run keeps what it changed: its checkpoint and log
are progress), then the folders it created. A folder that held a finished run is never touched,
and Ctrl-C or a crash keeps everything, so ``--resume`` can continue from the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..errors import PtragError, RunFolderError
from ..files import json_safe, read_json, write_json, write_text
from ..training.distributed import SINGLE, Dist, on_main
from . import lock

CONFIG = "config.yaml"
FINGERPRINT = "fingerprint.json"
FINISHED = "metrics.json"
CHECKPOINT = "checkpoint.pt"
META = "meta.pkl"  # a model without weights of its own: what predict reads in place of a checkpoint
#: what a run writes into its folder; a stopped run whose folder holds nothing else may restart
RUN_FILES = frozenset({
    CONFIG, FINGERPRINT, FINISHED, CHECKPOINT, "metrics.csv", "log.jsonl", "predictions.h5ad",
    "real.h5ad", "retrieval.csv", "retrieval_summary.json", "retriever", "compare", "compare.csv", "verdict.csv",
    META, "calibration.csv", "report",
})
#: the folder's lock and who holds it: never content of the folder (an empty folder may hold them)
LOCK_FILES = frozenset({lock.LOCK, lock.HOLDER})
#: keys a resumed run may change: where and how fast it runs, not what it computes
RESUME_MAY_CHANGE = ("device", "train.threads")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def _short(value: Any) -> str:
    text = json.dumps(json_safe(value)) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def differences(old: Mapping[str, Any], new: Mapping[str, Any], ignore: tuple[str, ...] = (),
                new_keys_ok: bool = False) -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs (``ignore``d prefixes skipped;
    with ``new_keys_ok``, keys the old mapping lacks, i.e. options added since, are not counted)."""
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in list(dict.fromkeys([*a, *b])):
        if any(key == p or key.startswith(p + ".") for p in ignore) or (new_keys_ok and key not in a):
            continue
        if a.get(key, "(unset)") != b.get(key, "(unset)"):
            out.append(f"{key}: {_short(a.get(key, '(unset)'))} -> {_short(b.get(key, '(unset)'))}")
    return out


def _shown(diffs: list[str], k: int = 4) -> str:
    return "; ".join(diffs[:k]) + (f"; +{len(diffs) - k} more" if len(diffs) > k else "")


def _input_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    for role in dict.fromkeys([*old, *new]):
        a, b = old.get(role), new.get(role)
        if a != b:
            where = (b or a or {}).get("path", role)
            if a and b and a.get("in_memory") and b.get("in_memory"):
                out.append(f"{role}: {where} differs from that run's (content hash)")
                continue
            out.append(f"{role} file {where} changed since that run (size or modification time)"
                       if a and b and a.get("path") == b.get("path") else f"{role} file: {(a or {}).get('path')} -> "
                       f"{(b or {}).get('path')}")
    return out


# --------------------------------------------------------------------------- the folder


@dataclass
class FolderState:
    """What a folder holds, seen from a run that wants to use it."""

    kind: str  # absent | empty | foreign | new-kind | different | finished | checkpoint | stopped
    differences: list[str] = field(default_factory=list)
    stored: dict[str, Any] | None = None


def stored_identity(path: Path) -> dict[str, Any] | None:
    """fingerprint.json, or for a run folder from before fingerprints, its config.yaml."""
    body = read_json(path / FINGERPRINT)
    if body is not None:
        return body
    if (path / CONFIG).is_file():
        try:
            config = yaml.safe_load((path / CONFIG).read_text()) or {}
        except yaml.YAMLError:
            return None
        config.pop("output", None)
        return {"kind": "run", "config": config, "inputs": None}
    return None


def inspect_folder(path: str | Path, identity: Mapping[str, Any]) -> FolderState:
    path = Path(path)
    if not path.exists():
        return FolderState("absent")
    entries = [p.name for p in path.iterdir() if p.name not in LOCK_FILES]
    if not entries:
        return FolderState("empty")
    stored = stored_identity(path)
    if stored is None:
        return FolderState("foreign", [", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")])
    if stored.get("kind", "run") != identity["kind"]:
        return FolderState("new-kind", [f"it holds a ptrag {stored.get('kind', 'run')} output"], stored)
    diffs = differences(stored.get("config") or {}, identity["config"])
    if diffs and stored.get("resolved"):  # the same request, resolved against the data when it ran
        diffs = diffs if differences(stored["resolved"], identity["config"]) else []
    if stored.get("inputs") is not None:
        diffs += _input_differences(stored["inputs"], identity.get("inputs") or {})
    if diffs:
        return FolderState("different", diffs, stored)
    if (path / FINISHED).is_file():
        return FolderState("finished", [], stored)
    if (path / CHECKPOINT).is_file():
        return FolderState("checkpoint", [], stored)
    return FolderState("stopped", [], stored)


def make_folder(path: Path, flag: str = "--out") -> list[Path]:
    """Create ``path`` and its missing parents, or fail in one line (a file in the way, no
    permission); the folders it created, leaf first."""
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{flag} {path}: exists and is a file, not a folder; give a folder path")
    missing, p = [], path
    while not p.exists():
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise RunFolderError(f"{flag} {path}: cannot create the folder: {p} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"{flag} {path}: cannot create the folder ({exc.strerror or exc})") from None
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for q in folders:  # leaf first; a folder another process has begun to use stays
        with contextlib.suppress(OSError):
            q.rmdir()


def _probe_creatable(path: Path, flag: str) -> None:
    """Create and remove the folder now, so a file in the way or a missing permission fails
    before any data is read, not after."""
    _remove_if_empty(make_folder(path, flag))


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _entries(path: Path) -> dict[str, tuple[int, ...]]:
    """Each entry's identity (a file's inode, time and size; a folder's inode), lock files left out."""
    out = {}
    for entry in os.scandir(path):
        if entry.name not in LOCK_FILES:
            st = entry.stat(follow_symlinks=False)
            out[entry.name] = (st.st_ino,) if entry.is_dir(follow_symlinks=False) else \
                (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def _discard(path: Path, before: dict[str, tuple[int, ...]], keep_changed: bool) -> None:
    """Remove the entries that are new since ``before`` (and those replaced, unless ``keep_changed``)."""
    for name, now in _entries(path).items():
        if name not in before or (not keep_changed and before[name] != now):
            _remove(path / name)


@contextlib.contextmanager
def _occupied_here(path: Path, flag: str, keep_changed: bool, clean: bool) -> Iterator[None]:
    """:func:`occupied` in the process that holds the folder."""
    created = make_folder(path, flag)
    try:
        lock.acquire(path, flag)
    except BaseException:
        _remove_if_empty(created)
        raise
    before, failed = _entries(path), False
    try:
        yield
    except (PtragError, OSError):
        failed = True
        raise
    finally:
        try:
            if failed and clean:
                with contextlib.suppress(OSError):  # the error that failed the run is the one to report
                    _discard(path, before, keep_changed)
        finally:
            lock.release(path)
            _remove_if_empty(created)


@contextlib.contextmanager
def occupied(path: str | Path, *, flag: str = "--out", keep_changed: bool = False, clean: bool = True,
             dist: Dist = SINGLE) -> Iterator[None]:
    """Hold ``path`` for the block (see the module docstring); under torchrun rank 0 alone holds it
    and a refusal there stops every rank. ``clean=False``: on failure only the folders this
    invocation created go, and only if empty (a grid's or a comparison's finished runs stay)."""
    stack = contextlib.ExitStack()

    def take() -> None:
        stack.enter_context(_occupied_here(Path(path), flag, keep_changed, clean))

    on_main(take, dist)
    with stack:
        yield


def _clear(path: Path, only: frozenset[str] | None = None) -> None:
    for entry in path.iterdir():
        if entry.name in LOCK_FILES or (only is not None and entry.name not in only and ".partial" not in entry.name):
            continue
        _remove(entry)


@dataclass
class RunFolder:
    """A folder claimed for one run; ``mode`` is new, restart, overwrite or resume."""

    path: Path
    identity: dict[str, Any]
    mode: str
    stored: dict[str, Any] | None = None

    @classmethod
    def claim(cls, path: str | Path, identity: Mapping[str, Any], *, resume: bool = False,
              overwrite: bool = False, flag: str = "--out") -> RunFolder:
        """Decide whether ``path`` may hold this run; touches nothing (see the module docstring)."""
        path, identity = Path(path), dict(identity)
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"{flag} {path}: exists and is a file, not a folder; give a folder path")
        if resume:
            return cls._resume(path, identity)
        state = inspect_folder(path, identity)
        if state.kind in ("absent", "empty"):
            if state.kind == "absent":
                _probe_creatable(path, flag)
            elif not os.access(path, os.W_OK):
                raise RunFolderError(f"{flag} {path}: the folder is not writable")
            return cls(path, identity, "new")
        if state.kind == "foreign":
            raise RunFolderError(f"{flag} {path}: the folder is not empty and holds no ptrag {identity['kind']} "
                                 f"({state.differences[0]}); choose a new or empty folder")
        if overwrite:
            return cls(path, identity, "overwrite", state.stored)
        if state.kind in ("different", "new-kind"):
            raise RunFolderError(f"{flag} {path}: holds a different {identity['kind']} ({_shown(state.differences)}); "
                                 "choose another folder, or pass --overwrite to replace it")
        if state.kind == "finished":
            raise RunFolderError(f"{flag} {path}: already holds this finished {identity['kind']} (same configuration "
                                 "and inputs); choose another folder, or pass --overwrite to run it again")
        if state.kind == "checkpoint":
            raise RunFolderError(f"{flag} {path}: holds an unfinished run of this configuration; continue it with "
                                 f"--resume {path}, or pass --overwrite to start it again")
        if any(e.name not in RUN_FILES | LOCK_FILES and ".partial" not in e.name for e in path.iterdir()):
            raise RunFolderError(f"{flag} {path}: holds a stopped run of this configuration and other files; "
                                 "pass --overwrite to clear it and start again")
        return cls(path, identity, "restart", state.stored)

    @classmethod
    def _resume(cls, path: Path, identity: dict[str, Any]) -> RunFolder:
        if not (path / CONFIG).is_file():
            raise RunFolderError(f"--resume {path}: not a run folder (no config.yaml); give the folder `ptrag run` "
                                 "printed last")
        if not (path / CHECKPOINT).is_file() and not (path / META).is_file():
            raise RunFolderError(f"--resume {path}: nothing to resume (no checkpoint.pt: the run stopped before its "
                                 f"first checkpoint); start it again with --out {path} --overwrite")
        try:
            resolved = yaml.safe_load((path / CONFIG).read_text()) or {}
        except yaml.YAMLError as exc:
            raise RunFolderError(f"--resume {path}: config.yaml is not valid YAML ({exc})") from None
        resolved.pop("output", None)
        stored = stored_identity(path) or {}
        # options added to ptrag since the run (absent from its config.yaml) take their defaults
        diffs = differences(resolved, identity["config"], ignore=RESUME_MAY_CHANGE, new_keys_ok=True)
        if diffs and stored.get("config") and not differences(stored["config"], identity["config"],
                                                               ignore=RESUME_MAY_CHANGE, new_keys_ok=True):
            diffs = []  # asked exactly as the run was asked (config.yaml holds what the data resolved)
        if stored.get("inputs") is not None:
            diffs += _input_differences(stored["inputs"], identity.get("inputs") or {})
        if diffs:
            raise RunFolderError(f"--resume {path}: the checkpoint was trained with other settings ({_shown(diffs)}); "
                                 f"resume without changing them (only {', '.join(RESUME_MAY_CHANGE)} may change), "
                                 "or start a new run with --out")
        return cls(path, identity, "resume", stored)

    def begin(self, content: Mapping[str, Any], config_yaml: str | None = None,
              resolved: Mapping[str, Any] | None = None) -> Path:
        """Once the data is read: check its ``content`` (:func:`content_fingerprint`) against the
        folder's, clear what must go, write config.yaml (``config_yaml``) and fingerprint.json
        (``resolved``: the configuration as run, when the data changed what was asked)."""
        old = (self.stored or {}).get("content") or {}
        new = dict(content)
        if self.mode == "resume":
            diffs = [key for key in ("data", "split", "embeddings")
                     if old.get(key) and old[key].get("hash") != new.get(key, {}).get("hash")]
            if diffs:
                raise RunFolderError(f"--resume {self.path}: the {', '.join(diffs)} differ from the run's (content "
                                     "hash); resume on the inputs it was trained on, or start a new run with --out")
            return self.path
        if self.mode == "overwrite":
            _clear(self.path)
        elif self.mode == "restart":
            _clear(self.path, RUN_FILES)
        self.path.mkdir(parents=True, exist_ok=True)
        if config_yaml is not None:
            write_text(self.path / CONFIG, config_yaml)
        write_json(self.path / FINGERPRINT, {**self.identity, "resolved": dict(resolved) if resolved else None,
                                              "content": new})
        return self.path



def new_run_dir(config: Any) -> Path:
    """``output.dir``, else a new folder ``<output.root>/<time>-<preset>-s<seed>`` (never an existing one)."""
    if config.output.dir:
        return Path(config.output.dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.output.root) / f"{stamp}-{config.preset or 'custom'}-s{config.seed}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path
