"""checkpoint.pt: written whole or not at all, read back with one-line errors and no code run.

A checkpoint is read with ``torch.load(weights_only=True)``: tensors, plain containers, numbers,
strings and numeric numpy arrays (a run's vocabularies and retrieval database), never an object
whose loading would call a function named in the file, so ``ptrag predict --run`` or ``--resume``
on a folder from someone else runs no code of theirs. A file that needs more is refused, never
read with ``weights_only=False``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..files import atomic_write
from ..pickles import torch_refusal, torch_safe_globals


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialised in memory, then written: a failed write (full disk, file-size limit) is Python's
    OSError naming the file, where torch's own writer says only "file write failed"."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint; was the run started with this ptrag version?")
    try:
        with torch.serialization.safe_globals(torch_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch on the pickle protocol of a file it then refuses
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        refused = torch_refusal(exc)
        if refused is not None:
            raise ConfigError(f"{path}: not loaded: it holds more than tensors, numbers and strings ({refused[1]}), "
                              "and loading that could run code in it; ptrag reads checkpoints with torch's "
                              "weights-only loader, never in full: use a run folder that ptrag made") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {first})") from None


def load_weights(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """``model.load_state_dict`` with one line instead of torch's traceback when they differ; weights
    that are not finite (a checkpoint ptrag never writes: training keeps its last finite best) are
    named, not left to fail later as some component's NaN output."""
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
