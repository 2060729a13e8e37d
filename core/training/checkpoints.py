"""checkpoint.pt and meta.pkl: written whole or not at all, read back with one-line errors.

A checkpoint's ``meta`` (what prediction needs besides the weights: vocabularies, the retrieval
database, feature names; the same for every run of one data split) is kept beside it in
``meta.pkl``, written only when its bytes change, so the runs of one run tree can share one copy
(runs/shared.py hard-links identical files); a weight that is a copy of one of its arrays (models
keep the retrieval database as buffers) is stored there only, as a reference the loader resolves.
A model without weights of its own (a baseline
rebuilt by ``fit`` from that database) has no checkpoint.pt at all: :func:`load_checkpoint` then
reads meta.pkl alone, with no weights to load. A finished run keeps only the weights it predicted
with (:func:`keep_for_prediction`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..files import atomic_write

META = "meta.pkl"  # also what checkpoint.pt holds in place of ``meta``


def meta_bytes(meta: dict[str, Any]) -> bytes:
    """meta.pkl's bytes: the same meta gives the same bytes (so identical files can be shared)."""
    return pickle.dumps(meta, protocol=4)


def save_meta(folder: Path, meta: dict[str, Any]) -> Path:
    """meta.pkl in ``folder``, rewritten (by a rename, never in place) only when its bytes change."""
    path, data = Path(folder) / META, meta_bytes(meta)
    if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
        atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return path


def load_meta(path: Path) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as fh:
            return pickle.load(fh)  # our own file
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read the run's vocabularies and database ({type(exc).__name__}: "
                          f"{exc})") from None


#: the weights of a checkpoint (state dicts) whose copies of meta's arrays are stored as references
STATES = ("model", "best_model", "start_model")
#: meta's arrays a model may copy into its buffers, and what stands for one in a state dict
META_ARRAYS = (("database", "response"), ("database", "embeddings"), ("pert_embedding",))
META_REF = "in meta.pkl"


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
    """checkpoint.pt, its ``meta`` in meta.pkl beside it (with the arrays its weights copy)."""
    path = Path(path)
    if isinstance(payload.get("meta"), dict):
        save_meta(path.parent, payload["meta"])
        arrays = _meta_arrays(payload["meta"])
        payload = {**payload, **{k: _by_reference(payload[k], arrays) for k in STATES if k in payload},
                   "meta": META}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """checkpoint.pt with its meta; for a folder with meta.pkl and no checkpoint.pt (a model without
    weights), ``{"model": None, "best_model": None, "step": 0, "meta": ...}``."""
    path = Path(path)
    meta = path.parent / META
    if not path.is_file():
        if meta.is_file():
            return {"model": None, "best_model": None, "step": 0, "meta": load_meta(meta)}
        raise ConfigError(f"{path}: no checkpoint; was the run started with this ptrag version?")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)  # our own file
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc})") from None
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
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{path}: the saved weights do not fit this model ({first}); use the run's own "
                          "configuration (config.yaml) and ptrag version") from None
