"""Where a run computes: the device, bf16 autocast, and one seed for every generator."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from ..errors import ConfigError


def seed_everything(seed: int) -> np.random.Generator:
    """One seed drives Python, NumPy and torch; returns the NumPy generator for sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but it is not available; use --device auto or cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast when ``precision`` asks for it: ``auto`` uses it on CUDA only, ``bf16`` on
    any device (CPU included), ``float32`` never."""
    enabled = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
