"""The built-in screens: two simulator families, one entry point."""

from __future__ import annotations

import anndata as ad

from ..errors import ConfigError
from .synth import synth_screen
from .synth_grn import synth_grn_screen

FAMILIES = {"v3": synth_screen, "grn": synth_grn_screen}


def builtin_screen(preset: str = "demo", seed: int = 0, family: str = "v3") -> ad.AnnData:
    """The built-in screen of ``family`` at size ``preset`` from the data seed ``seed``."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown simulator family {family!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family](preset, seed)


def describe(preset: str, seed: int, family: str = "v3") -> str:
    """How messages and metrics.json name a built-in screen."""
    kind = "" if family == "v3" else f" {family}-family"
    return f"built-in{kind} {preset} dataset (data seed {seed})"
