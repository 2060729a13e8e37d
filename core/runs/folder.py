"""Run folders that never lie: one rule for reusing a folder.

A folder holds exactly one run (or one `ptrag predict` output); ``.ptrag-run`` (:mod:`.marker`)
says that ptrag made it and lists every entry ptrag wrote there, and ``fingerprint.json``
(:mod:`.fingerprints`) records what made the run.

:meth:`RunFolder.claim` decides before any data is read whether a folder may be used:

- absent or empty: a new run (a folder that cannot be created fails now, in one line);
- without the marker: never a run, whatever it holds (a config.yaml is not enough): refused,
  a run folder of a ptrag before markers in words of its own (it stays readable: ptrag report,
  ptrag predict --run);
- the same configuration, stopped before its first checkpoint: started again (its own files go);
- the same configuration with a checkpoint but no metrics.json: only ``resume`` continues it;
- ``resume``: the folder's config.yaml with only the keys in :data:`RESUME_MAY_CHANGE` changed;
- anything else, a finished run of the same configuration included, is refused in one line that
  names the differing keys, unless ``overwrite``, which removes exactly what the marker lists.

Starting again and ``overwrite`` refuse, naming them, when the folder also holds files ptrag did
not write (a notebook, figures): those are never deleted, nor mixed with a new run.

:meth:`RunFolder.begin`, once the data is read, checks its content against the folder's (a resumed
run must see the same data and split) and writes the marker, config.yaml and fingerprint.json.
Result files are written under a temporary name and renamed (``ptrag.core.files``), so a crash
never leaves half a file, and metrics.json is written last: its presence marks a finished run.

:func:`occupied` holds a folder for one invocation: it creates it if needed, takes its lock
(:mod:`.lock`: a second process is refused at once), lists in the marker what the invocation
writes there, and when the invocation fails with a ptrag or filesystem error it removes exactly
what that invocation created: every entry that is new or replaced since it took the folder (a
resumed run keeps what it changed: its checkpoint and log are progress), then the folders it
created. A folder that held a finished run is never touched, and Ctrl-C or a crash keeps
everything, so ``--resume`` can continue from the checkpoint.
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
from ..files import announce, json_safe, read_json, write_json, write_text
from ..markup import load_yaml, read_text
from ..training.distributed import SINGLE, Dist, on_main
from . import lock, marker
from .marker import MARKER

CONFIG = "config.yaml"
FINGERPRINT = "fingerprint.json"
FINISHED = "metrics.json"
#: the file a folder's invocation writes last, where it is not metrics.json (an in-silico screen)
FINISHED_AS = {"knockdowns": "knockdowns.json"}
CHECKPOINT = "checkpoint.pt"
META = "meta.pt"  # a model without weights of its own: what predict reads in place of a checkpoint
#: what a run writes into its folder (its marker lists each as it is written, runs/marker.py)
RUN_FILES = frozenset({
    MARKER, CONFIG, FINGERPRINT, FINISHED, CHECKPOINT, "metrics.csv", "log.jsonl", "predictions.h5ad",
    "real.h5ad", "retrieval.csv", "retrieval_summary.json", "retriever", "compare", "compare.csv", "verdict.csv",
    META, "calibration.csv", "report",
})
#: the folder's lock and who holds it: never content of the folder (an empty folder may hold them)
LOCK_FILES = frozenset({lock.LOCK, lock.HOLDER})
#: beside a config.yaml, what tells a run folder of a ptrag before markers (runs/marker.py) from a
#: folder of other files (a grid's folder: its ablation.json)
LEGACY_SIGNS = (FINGERPRINT, FINISHED, CHECKPOINT, "log.jsonl")
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

    kind: str  # absent | empty | foreign | legacy | new-kind | different | finished | checkpoint | stopped
    differences: list[str] = field(default_factory=list)
    stored: dict[str, Any] | None = None


def config_yaml(path: Path) -> dict[str, Any]:
    """A run folder's config.yaml as a mapping ({} when empty); yaml.YAMLError is the caller's to word."""
    config = load_yaml(read_text(path / CONFIG, RunFolderError, "YAML"), str(path / CONFIG), RunFolderError) or {}
    if not isinstance(config, dict):
        raise RunFolderError(f"{path / CONFIG}: expected a mapping at the top level, got {type(config).__name__}")
    return config


def stored_identity(path: Path) -> dict[str, Any] | None:
    """fingerprint.json, or for a run folder from before fingerprints, its config.yaml."""
    body = read_json(path / FINGERPRINT)
    if body is not None:
        return body
    if (path / CONFIG).is_file():
        try:
            config = config_yaml(path)
        except (yaml.YAMLError, RunFolderError):
            return None
        config.pop("output", None)
        return {"kind": "run", "config": config, "inputs": None}
    return None


def is_legacy(path: Path) -> bool:
    """A run (or grid) folder of a ptrag before markers: readable, never written (runs/marker.py)."""
    if (path / MARKER).exists():
        return False
    run = (path / CONFIG).is_file() and any((path / name).exists() for name in LEGACY_SIGNS)
    return run or (path / "ablation.json").is_file()


def inspect_folder(path: str | Path, identity: Mapping[str, Any], flag: str = "--out") -> FolderState:
    path = Path(path)
    if not path.exists():
        return FolderState("absent")
    entries = [p.name for p in path.iterdir() if p.name not in LOCK_FILES]
    if not entries:
        return FolderState("empty")
    mark = marker.read(path, flag)
    if mark is None:
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        return FolderState("legacy" if is_legacy(path) else "foreign", [shown])
    stored = stored_identity(path)
    finished = path / FINISHED_AS.get(mark.kind, FINISHED)
    if mark.kind != identity["kind"]:
        return FolderState("new-kind", [f"it holds a ptrag {mark.kind}"], stored)
    if stored is None and (finished.is_file() or (path / CHECKPOINT).is_file()):  # its records deleted by hand
        return FolderState("different", [f"its {CONFIG} and {FINGERPRINT} are missing, so what made it is unknown"])
    if stored is None:  # marked, stopped before its fingerprint was written: nothing of value
        return FolderState("stopped", [], None)
    diffs = differences(stored.get("config") or {}, identity["config"])
    if diffs and stored.get("resolved"):  # the same request, resolved against the data when it ran
        diffs = diffs if differences(stored["resolved"], identity["config"]) else []
    if stored.get("inputs") is not None:
        diffs += _input_differences(stored["inputs"], identity.get("inputs") or {})
    if diffs:
        return FolderState("different", diffs, stored)
    if finished.is_file():
        return FolderState("finished", [], stored)
    if (path / CHECKPOINT).is_file():
        return FolderState("checkpoint", [], stored)
    return FolderState("stopped", [], stored)


def make_folder(path: Path, flag: str = "--out") -> list[Path]:
    """Create ``path`` and its missing parents, or fail in one line (a file in the way, no
    permission); the folders it created, leaf first."""
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{flag} {path}: exists and is a file, not a folder; give a folder path")
    missing = _missing(path)
    p = missing[-1].parent if missing else path
    if not p.is_dir():
        raise RunFolderError(f"{flag} {path}: cannot create the folder: {p} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"{flag} {path}: cannot create the folder ({exc.strerror or exc})") from None
    return missing


def _missing(path: Path) -> list[Path]:
    """The folders of ``path`` that do not exist yet, leaf first."""
    missing, p = [], path
    while not p.exists():
        missing.append(p)
        p = p.parent
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
    marker.require_outside(path, flag)
    for folder in reversed(_missing(path)):  # made inside a held run folder (compare/): listed there first
        announce(folder)
    created = make_folder(path, flag)
    try:
        lock.acquire(path, flag)
    except BaseException:
        _remove_if_empty(created)
        raise
    marker.hold(path)
    before, failed = _entries(path), False
    try:
        yield
    except (PtragError, OSError, SystemExit):  # SystemExit: from code ptrag calls (api/boundary.py)
        failed = True
        raise
    finally:
        try:
            if failed and clean:
                with contextlib.suppress(OSError):  # the error that failed the run is the one to report
                    _discard(path, before, keep_changed)
        finally:
            marker.release(path)
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


def _clear(path: Path, mark: marker.Marker) -> None:
    """Remove what the marker lists (and ptrag's half-written files), the marker last."""
    for entry in path.iterdir():
        if marker.ptrags(entry.name, mark):
            _remove(entry)
    with contextlib.suppress(FileNotFoundError):
        (path / MARKER).unlink()


def resumable(path: Path) -> None:
    """What --resume checks before it reads the folder's config.yaml: a run folder of this ptrag."""
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"--resume {path}: exists and is a file, not a run folder; give the folder `ptrag run` "
                             "printed last")
    mark = marker.read(path, "--resume")
    if mark is None:
        raise RunFolderError(legacy_message(path, "--resume") if is_legacy(path) else
                             f"--resume {path}: not a run folder (no {MARKER}); give the folder `ptrag run` printed "
                             "last")
    if mark.kind != "run" or not (path / CONFIG).is_file():
        what = f"it holds a ptrag {mark.kind}" if mark.kind != "run" else "no config.yaml: it stopped as it began"
        raise RunFolderError(f"--resume {path}: holds no run to resume ({what}); give the folder `ptrag run` "
                             "printed last")


def legacy_message(path: Path, flag: str, what: str = "run") -> str:
    return (f"{flag} {path}: holds a {what} made by an earlier ptrag (it has no {MARKER} marker): ptrag reads it "
            "(ptrag report, ptrag predict --run) but never resumes, reuses or overwrites it; choose another folder")


def _same_family(path: Path, identity: Mapping[str, Any], flag: str) -> None:
    """A run, a prediction and an in-silico screen may replace one another (with --overwrite);
    a grid, a report or a saved retriever never is replaced by, nor replaces, anything else."""
    mark = marker.read(path, flag)
    if mark is not None and mark.kind != identity["kind"] and \
            not {mark.kind, identity["kind"]} <= set(marker.REPLACEABLE):
        raise RunFolderError(f"{flag} {path}: holds a ptrag {mark.kind}, not a {identity['kind']}; --overwrite "
                             "never replaces one with the other: choose another folder")


def _replaceable(path: Path, identity: Mapping[str, Any], flag: str) -> None:
    """--overwrite replaces a run or a prediction, never a grid of runs, never the user's files."""
    _same_family(path, identity, flag)
    _only_ptrags(path, flag, "--overwrite")


def _only_ptrags(path: Path, flag: str, what: str) -> marker.Marker:
    """The folder's marker, once it is sure the folder holds nothing else (before ``what``)."""
    mark = marker.read(path, flag)
    others = marker.not_ptrags(path, mark) if mark is not None else []
    if others:
        raise RunFolderError(f"{flag} {path}: also holds files ptrag did not write ({marker.shown(others)}); "
                             f"{what} deletes only ptrag's own files and would leave yours beside a new run: move "
                             "them out of the folder first, or choose another --out")
    return mark


@dataclass
class RunFolder:
    """A folder claimed for one run; ``mode`` is new, restart, overwrite or resume."""

    path: Path
    identity: dict[str, Any]
    mode: str
    stored: dict[str, Any] | None = None
    flag: str = "--out"

    @classmethod
    def claim(cls, path: str | Path, identity: Mapping[str, Any], *, resume: bool = False,
              overwrite: bool = False, flag: str = "--out") -> RunFolder:
        """Decide whether ``path`` may hold this run; touches nothing (see the module docstring)."""
        path, identity = Path(path), dict(identity)
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"{flag} {path}: exists and is a file, not a folder; give a folder path")
        if resume:
            return cls._resume(path, identity)
        state = inspect_folder(path, identity, flag)
        if state.kind in ("absent", "empty"):
            if state.kind == "absent":
                _probe_creatable(path, flag)
            elif not os.access(path, os.W_OK):
                raise RunFolderError(f"{flag} {path}: the folder is not writable")
            return cls(path, identity, "new", flag=flag)
        if state.kind == "foreign":
            raise RunFolderError(f"{flag} {path}: the folder is not empty and holds no ptrag {identity['kind']} "
                                 f"({state.differences[0]}); choose a new or empty folder")
        if state.kind == "legacy":
            raise RunFolderError(legacy_message(path, flag))
        if state.kind == "new-kind":
            _same_family(path, identity, flag)  # refused before suggesting --overwrite
        if overwrite:
            _replaceable(path, identity, flag)
            return cls(path, identity, "overwrite", state.stored, flag)
        if state.kind in ("different", "new-kind"):
            raise RunFolderError(f"{flag} {path}: holds a different {identity['kind']} ({_shown(state.differences)}); "
                                 "choose another folder, or pass --overwrite to replace it")
        if state.kind == "finished":
            raise RunFolderError(f"{flag} {path}: already holds this finished {identity['kind']} (same configuration "
                                 "and inputs); choose another folder, or pass --overwrite to run it again")
        if state.kind == "checkpoint":
            raise RunFolderError(f"{flag} {path}: holds an unfinished run of this configuration; continue it with "
                                 f"--resume {path}, or pass --overwrite to start it again")
        _only_ptrags(path, flag, "starting its stopped run again")
        return cls(path, identity, "restart", state.stored, flag)

    @classmethod
    def _resume(cls, path: Path, identity: dict[str, Any]) -> RunFolder:
        resumable(path)
        if not (path / CHECKPOINT).is_file() and not (path / META).is_file():
            raise RunFolderError(f"--resume {path}: nothing to resume (no checkpoint.pt: the run stopped before its "
                                 f"first checkpoint); start it again with --out {path} --overwrite")
        try:
            resolved = config_yaml(path)
        except yaml.YAMLError as exc:
            raise RunFolderError(f"--resume {path}: config.yaml is not valid YAML ({exc})") from None
        resolved.pop("output", None)
        stored = stored_identity(path) or {}
        _refuse_edited_config(path, resolved, stored)
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
        if self.mode in ("overwrite", "restart"):  # checked again: files may have come since the claim
            _clear(self.path, _only_ptrags(self.path, self.flag, "--overwrite" if self.mode == "overwrite" else
                                           "starting its stopped run again"))
        self.path.mkdir(parents=True, exist_ok=True)
        marker.create(self.path, self.identity["kind"])
        if config_yaml is not None:
            write_text(self.path / CONFIG, config_yaml)
        write_json(self.path / FINGERPRINT, {**self.identity, "resolved": dict(resolved) if resolved else None,
                                              "content": new})
        return self.path



def _refuse_edited_config(path: Path, config_yaml: Mapping[str, Any], stored: Mapping[str, Any],
                          flag: str = "--resume ") -> None:
    """config.yaml as fingerprint.json recorded it when the run began (its ``resolved`` config), or
    one line naming the edited keys: a resume or a prediction reads config.yaml, so a hand edit
    would train the checkpoint on, or predict, with values the run's record does not hold (the same
    change by flags is refused)."""
    recorded = stored.get("resolved")
    if not isinstance(recorded, Mapping):
        return  # a folder from before fingerprints recorded it: nothing to compare with
    edited = differences(recorded, config_yaml, ignore=RESUME_MAY_CHANGE)
    if edited:
        where = f"{flag}{path}: {path / CONFIG}" if flag else str(path / CONFIG)
        raise RunFolderError(f"{where} was edited since the run began ({_shown(edited)}); "
                             f"the checkpoint was trained with the values {FINGERPRINT} records: restore them, or "
                             f"run the edited file as a new run (ptrag run --config {path / CONFIG} --out NEW)")


def require_unedited(path: Path) -> None:
    """Before a finished run predicts (``ptrag predict --run``, an ensemble's members): its
    config.yaml must be what the run ran with (:func:`_refuse_edited_config`)."""
    try:
        config = config_yaml(path)
    except yaml.YAMLError:
        return  # resolve_config words it
    config.pop("output", None)
    _refuse_edited_config(path, config, stored_identity(path) or {}, flag="")


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
