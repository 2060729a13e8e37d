"""checkpoint.pt and meta.pt: written whole or not at all, read back with one-line errors and no code run.

Both are read with ``torch.load(weights_only=True)``: tensors, plain containers, numbers, strings
and numeric numpy arrays (a run's vocabularies and retrieval database), never an object whose
loading would call a function named in the file, so ``ptrag predict --run`` or ``--resume`` on a
folder from someone else runs no code of theirs. A file that needs more is refused, never read
with ``weights_only=False``.

A checkpoint's ``meta`` (what prediction needs besides the weights: vocabularies, the retrieval
database, feature names; the same for every run of one data split) is kept beside it in
``meta.pt``, written only when its bytes change, so the runs of one run tree can share one copy
(runs/shared.py hard-links identical files); a weight that is a copy of one of its arrays (models
keep the retrieval database as buffers) is stored there only, as a reference the loader resolves.
A model without weights of its own (a baseline rebuilt by ``fit`` from that database) has no
checkpoint.pt at all: :func:`load_checkpoint` then reads meta.pt alone, with no weights to load.
A finished run keeps only the weights it predicted with (:func:`keep_for_prediction`).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..files import atomic_write
from ..pickles import torch_refusal, torch_safe_globals

META = "meta.pt"  # also what checkpoint.pt holds in place of ``meta``


def _serialised(value: Any) -> bytes:
    """torch.save's bytes, made in memory: a failed write is then Python's OSError naming the file
    (torch's own writer says only "file write failed"), and the same value gives the same bytes."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _read(path: Path, what: str) -> Any:
    """``path`` through torch's weights-only loader (numeric numpy arrays allowed), refused in one
    line when it holds anything whose loading could run code."""
    try:
        with torch.serialization.safe_globals(torch_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch on the pickle protocol of a file it then refuses
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        refused = torch_refusal(exc)
        if refused is not None:
            raise ConfigError(f"{path}: not loaded: it holds more than tensors, numbers and strings ({refused[1]}), "
                              "and loading that could run code in it; ptrag reads checkpoints and their meta.pt "
                              "with torch's weights-only loader, never in full: use a run folder that ptrag made") \
                from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(f"{path}: cannot read the {what} ({type(exc).__name__}: {first})") from None


def save_meta(folder: Path, meta: dict[str, Any]) -> Path:
    """meta.pt in ``folder``, rewritten (by a rename, never in place) only when its bytes change."""
    path, data = Path(folder) / META, _serialised(meta)
    if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
        atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return path


def load_meta(path: Path) -> dict[str, Any]:
    meta = _read(Path(path), "run's vocabularies and database")
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: holds a {type(meta).__name__}, not a run's vocabularies and database")
    return meta


#: the weights of a checkpoint (state dicts) whose copies of meta's arrays are stored as references
STATES = ("model", "best_model", "start_model")
#: meta's arrays a model may copy into its buffers, and what stands for one in a state dict
META_ARRAYS = (("database", "response"), ("database", "embeddings"), ("pert_embedding",))
META_REF = "in meta.pt"


def _meta_arrays(meta: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for keys in META_ARRAYS:
        value: Any = meta
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, np.ndarray) and value.size:
            out["/".join(keys)] = value
    return out


def _copy_of(tensor: torch.Tensor, arrays: dict[str, np.ndarray]) -> str | None:
    for name, array in arrays.items():
        if tuple(tensor.shape) == array.shape and torch.from_numpy(array).dtype == tensor.dtype and \
                torch.equal(tensor.detach().cpu(), torch.from_numpy(array)):
            return name
    return None


def _by_reference(state: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A state dict whose tensors equal to one of meta's arrays name it instead."""
    if not isinstance(state, dict) or not arrays:
        return state
    out = {}
    for key, value in state.items():
        name = _copy_of(value, arrays) if torch.is_tensor(value) else None
        out[key] = {META_REF: name} if name else value
    return out


def _resolved(state: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not isinstance(state, dict):
        return state
    return {key: torch.from_numpy(arrays[value[META_REF]].copy())
            if isinstance(value, dict) and META_REF in value else value for key, value in state.items()}


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """checkpoint.pt, its ``meta`` in meta.pt beside it (with the arrays its weights copy)."""
    path = Path(path)
    if isinstance(payload.get("meta"), dict):
        save_meta(path.parent, payload["meta"])
        arrays = _meta_arrays(payload["meta"])
        payload = {**payload, **{k: _by_reference(payload[k], arrays) for k in STATES if k in payload},
                   "meta": META}
    data = _serialised(payload)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """checkpoint.pt with its meta; for a folder with meta.pt and no checkpoint.pt (a model without
    weights), ``{"model": None, "best_model": None, "step": 0, "meta": ...}``."""
    path = Path(path)
    meta = path.parent / META
    if not path.is_file():
        if meta.is_file():
            return {"model": None, "best_model": None, "step": 0, "meta": load_meta(meta)}
        raise ConfigError(f"{path}: no checkpoint; was the run started with this ptrag version?")
    ck = _read(path, "checkpoint")
    if not isinstance(ck, dict):
        raise ConfigError(f"{path}: holds a {type(ck).__name__}, not a ptrag checkpoint")
    if ck.get("meta") == META:
        if not meta.is_file():
            raise ConfigError(f"{meta}: missing; checkpoint.pt keeps its vocabularies and database there, so "
                              "copy the run folder whole")
        ck["meta"] = load_meta(meta)
        arrays = _meta_arrays(ck["meta"])
        ck.update({k: _resolved(ck[k], arrays) for k in STATES if k in ck})
    return ck


#: what a finished run's checkpoint keeps: the weights prediction uses and the record of training
FINISHED_KEYS = ("step", "history", "stopping", "world_size", "selection", "meta")


def keep_for_prediction(path: Path) -> None:
    """A finished run's checkpoint.pt cut to the weights its predictions used (the best, or the
    last) and the record of training: the optimiser state, the last and the start weights only
    served to resume it, and a finished run is read back, never resumed (runs/experiment.py)."""
    path = Path(path)
    if not path.is_file():
        return
    ck = load_checkpoint(path)
    if ck.get("finished"):
        return
    kept = {"model": None, "best_model": ck.get("best_model") or ck["model"], "finished": True,
            **{k: ck[k] for k in FINISHED_KEYS if k in ck}}
    save_checkpoint(path, kept)


def load_weights(model: nn.Module, state: dict[str, Any] | None, path: Path) -> None:
    """``model.load_state_dict`` with one line instead of torch's traceback when they differ; no
    state (a model without weights of its own) leaves the model as ``fit`` built it."""
    if state is None:
        return
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ConfigError(f"{path}: weights {', '.join(bad[:3])}{' and more' if len(bad) > 3 else ''} hold NaN or "
                          "inf; ptrag never saves such weights, so the file was changed or damaged: use the run folder "
                          "as ptrag left it, or run it again")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{path}: the saved weights do not fit this model ({first}); use the run's own "
                          "configuration (config.yaml) and ptrag version") from None
