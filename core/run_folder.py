"""Run folders that never lie: atomic writes, fingerprints and one rule for reusing a folder.

A folder holds exactly one run (or one `ptrag predict` output). ``fingerprint.json`` records what
made it: the configuration as asked (``output`` left out: where a run lives is not what it is),
the input files (path, size, modification time), the data's content (a hash of the expression
matrix, full or over evenly spaced rows, and of the labels), the gene embeddings used and the split.

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
are written under a temporary name and renamed (:func:`atomic_write`), so a crash never leaves
half a file, and metrics.json is written last: its presence marks a finished run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import yaml

from .errors import RunFolderError

CONFIG = "config.yaml"
FINGERPRINT = "fingerprint.json"
FINISHED = "metrics.json"
CHECKPOINT = "checkpoint.pt"
#: what a run writes into its folder; a stopped run whose folder holds nothing else may restart
RUN_FILES = frozenset({
    CONFIG, FINGERPRINT, FINISHED, CHECKPOINT, "checkpoint.tmp", "metrics.csv", "log.jsonl", "predictions.h5ad",
    "real.h5ad", "retrieval.csv", "retrieval_summary.json", "retriever", "compare", "compare.csv", "verdict.csv",
})
#: keys a resumed run may change: where and how fast it runs, not what it computes
RESUME_MAY_CHANGE = ("device", "train.threads")
#: matrices with more rows are hashed over this many evenly spaced rows (plus the file's size and time)
SAMPLED_ROWS = 4096


# --------------------------------------------------------------------------- writing


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays as Python ones, NaN and infinities as null."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def dumps_json(value: Any) -> str:
    """Valid JSON (``null``, never a bare ``NaN``), indented for people."""
    return json.dumps(json_safe(value), indent=2, allow_nan=False)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to a hidden sibling, then rename it over ``path``: readers see the old file
    or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, value: Any) -> Path:
    return write_text(path, dumps_json(value) + "\n")


def write_csv(path: str | Path, frame: Any) -> Path:
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


# --------------------------------------------------------------------------- fingerprints


def _digest(*parts: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def config_identity(config: Any) -> dict[str, Any]:
    """The configuration as a plain mapping, without ``output``."""
    out = config.to_yaml_dict()
    out.pop("output", None)
    return out


def config_text(config: Any) -> str:
    """config.yaml: the configuration as run, with ``output.dir`` left empty (the file lives in the
    folder), so that ``ptrag run --config RUN/config.yaml`` reruns it into a new folder."""
    return config.model_copy(update={"output": config.output.model_copy(update={"dir": None})}).dump_yaml()


def input_files(paths: Mapping[str, str | None]) -> dict[str, dict[str, Any]]:
    """role -> {path, size, mtime_ns} for the named files that exist."""
    out = {}
    for role, value in paths.items():
        if value and Path(value).is_file():
            stat = Path(value).stat()
            out[role] = {"path": str(Path(value).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return out


def run_identity(config: Any, screen: Any = None) -> dict[str, Any]:
    """What makes a `ptrag run`: the configuration as asked and its input files; ``screen``, data
    handed over in memory (the Python API), stands in for ``data.path`` (:func:`memory_input`)."""
    data = config.data
    inputs = input_files({"data": data.path, "split": data.split,
                          "gene_embeddings": data.gene_embeddings, "gene_sets": data.gene_sets})
    if screen is not None:
        inputs["data"] = memory_input(screen)
    return {"kind": "run", "config": config_identity(config), "inputs": inputs}


def memory_input(screen: Any) -> dict[str, Any]:
    """An input that is no file (an AnnData in memory): its name and content hash, so a folder
    still tells which data made it."""
    return {"path": screen.source, "in_memory": True, "hash": data_fingerprint(screen)["hash"]}


def data_fingerprint(data: Any) -> dict[str, Any]:
    """Content hashes of a screen: the expression matrix (every row, or SAMPLED_ROWS evenly spaced
    rows of a larger one) and the labels (cell names, perturbation, cell line, batch, features)."""
    n, g = int(data.X.shape[0]), int(data.X.shape[1])
    rows = np.arange(n) if n <= SAMPLED_ROWS else np.unique(np.linspace(0, n - 1, SAMPLED_ROWS).astype(np.int64))
    block = np.ascontiguousarray(np.asarray(data.X[rows], dtype=np.float32))
    matrix = _digest(f"{n}x{g}", block.tobytes())
    labels = _digest(*("\n".join(data.obs[c].astype(str)) for c in data.obs.columns),
                     "\n".join(map(str, data.obs.index)), "\n".join(map(str, data.features)))
    return {"source": data.source, "cells": n, "features": g, "matrix": matrix,
            "matrix_rows_hashed": "all" if len(rows) == n else f"{len(rows)} of {n}",
            "labels": labels, "hash": _digest(matrix, labels)}


def split_fingerprint(split: Any) -> dict[str, Any]:
    parts = [f"{role}:{p}\t{c}" for role in ("train", "val", "test") for p, c in sorted(getattr(split, role))]
    return {"hash": _digest(*parts), "train": len(split.train), "val": len(split.val), "test": len(split.test)}


def embeddings_fingerprint(perts: list[str], vectors: Mapping[str, np.ndarray]) -> str:
    return _digest(*perts, *(np.asarray(vectors[p], dtype=np.float32).tobytes() for p in perts))


def content_fingerprint(data: Any, split: Any, vectors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """What a run computed on: the data, the split and the perturbations' gene embeddings."""
    return {"data": data_fingerprint(data), "split": split_fingerprint(split),
            "embeddings": {"hash": embeddings_fingerprint(list(data.perturbations), vectors)}}


def fingerprint_summary(folder: "RunFolder", content: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
    """The hashes metrics.json carries, so `ptrag report` can tell whether runs are comparable."""
    config = _digest(json.dumps(json_safe(folder.identity["config"]), sort_keys=True))
    return {"config": config, **{k: v["hash"] for k, v in content.items()}, "seed": seed}


# --------------------------------------------------------------------------- comparing


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


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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
    entries = [p.name for p in path.iterdir()]
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


def _probe_creatable(path: Path, flag: str) -> None:
    """Create and remove the folder now, so a file in the way or a missing permission fails
    before any data is read, not after."""
    missing, p = [], path
    while not p.exists():
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise RunFolderError(f"{flag} {path}: cannot create the folder: {p} is a file")
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise RunFolderError(f"{flag} {path}: cannot create the folder ({exc.strerror or exc})") from None
    for q in missing:  # leaf first
        q.rmdir()


def _clear(path: Path, only: frozenset[str] | None = None) -> None:
    for entry in path.iterdir():
        if only is not None and entry.name not in only and ".partial" not in entry.name:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@dataclass
class RunFolder:
    """A folder claimed for one run; ``mode`` is new, restart, overwrite or resume."""

    path: Path
    identity: dict[str, Any]
    mode: str
    stored: dict[str, Any] | None = None

    @classmethod
    def claim(cls, path: str | Path, identity: Mapping[str, Any], *, resume: bool = False,
              overwrite: bool = False, flag: str = "--out") -> "RunFolder":
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
        if any(e.name not in RUN_FILES and ".partial" not in e.name for e in path.iterdir()):
            raise RunFolderError(f"{flag} {path}: holds a stopped run of this configuration and other files; "
                                 "pass --overwrite to clear it and start again")
        return cls(path, identity, "restart", state.stored)

    @classmethod
    def _resume(cls, path: Path, identity: dict[str, Any]) -> "RunFolder":
        if not (path / CONFIG).is_file():
            raise RunFolderError(f"--resume {path}: not a run folder (no config.yaml); give the folder `ptrag run` "
                                 "printed last")
        if not (path / CHECKPOINT).is_file():
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


# --------------------------------------------------------------------------- comparing finished runs


def recorded_fingerprint(folder: str | Path) -> dict[str, Any] | None:
    """The hashes a finished run recorded in metrics.json (None for runs made before them)."""
    body = read_json(Path(folder) / FINISHED) or {}
    fingerprint = (body.get("run") or {}).get("fingerprint")
    return fingerprint if isinstance(fingerprint, dict) and fingerprint.get("data") else None


def _by_hash(items: list[tuple[str, str]]) -> str:
    groups: dict[str, list[str]] = {}
    for name, value in items:
        groups.setdefault(value, []).append(name)
    return "; ".join(f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''} on {value[:8]}"
                     for value, names in groups.items())


def comparability(folders: list[Path]) -> tuple[list[str], bool]:
    """(warnings, comparable): runs of one seed must share their data (else not comparable) and
    their split (else they were scored on different perturbations). Seeds may differ in data on
    purpose (an ablation varying ``data.seed``), so runs are compared within a seed."""
    found = {Path(f): recorded_fingerprint(f) for f in folders}
    known = {f: fp for f, fp in found.items() if fp}
    warnings, comparable = [], True
    by_seed: dict[Any, list[Path]] = {}
    for f, fp in known.items():
        by_seed.setdefault(fp.get("seed"), []).append(f)
    for seed, members in by_seed.items():
        data = [(f.name, known[f]["data"]) for f in members]
        if len({d for _, d in data}) > 1:
            comparable = False
            warnings.append(f"runs with seed {seed} were made on different data (data hash: {_by_hash(data)}); "
                            "their numbers are not comparable, so no best is marked")
            continue
        split = [(f.name, known[f]["split"]) for f in members]
        if len({s for _, s in split}) > 1:
            warnings.append(f"runs with seed {seed} used different splits (split hash: {_by_hash(split)}); they "
                            "were scored on different held-out perturbations")
    missing = [f.name for f, fp in found.items() if fp is None]
    if missing and known:
        warnings.append(f"{len(missing)} run(s) carry no data fingerprint (made by an older ptrag: "
                        f"{', '.join(missing[:3])}); they were not checked")
    return warnings, comparable


def require_same_data(a: list[Path], b: list[Path], names: tuple[str, str]) -> None:
    """A paired test pairs the same held-out cells: refuse runs made on different data."""
    fa, fb = [recorded_fingerprint(f) for f in a], [recorded_fingerprint(f) for f in b]
    if not all(fa) or not all(fb):
        return  # made before fingerprints: cannot tell
    da, db = {fp["data"] for fp in fa}, {fp["data"] for fp in fb}
    if da != db:
        raise RunFolderError(f"--compare {names[0]} {names[1]}: the two were made on different data (data hash "
                             f"{', '.join(sorted(h[:8] for h in da))} vs {', '.join(sorted(h[:8] for h in db))}); "
                             "a paired test needs the same held-out cells, so compare runs on the same data")
