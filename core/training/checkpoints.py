"""checkpoint.pt: written whole or not at all, read back with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..files import atomic_write


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint; was the run started with this ptrag version?")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # our own file
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc})") from None


def load_weights(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """``model.load_state_dict`` with one line instead of torch's traceback when they differ."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{path}: the saved weights do not fit this model ({first}); use the run's own "
                          "configuration (config.yaml) and ptrag version") from None
