"""ptrag: predict single-cell responses to gene knock-downs with retrieval-augmented generation.

``import ptrag`` stays light: the Python API (``ptrag.run``, ``predict``, ``score``, ``compare``,
``components``, ``configure``; docs/api.md) is imported from :mod:`ptrag.core.api` on first use, and
the subpackages ``ptrag.core``, ``ptrag.plugins`` and ``ptrag.cli`` work as they always did.
"""

from __future__ import annotations

import importlib
from typing import Any

from ptrag.core import __version__
from ptrag.core.errors import PtragError

_API = ("configure", "run", "run_comparisons", "predict", "predict_knockdowns", "score", "compare", "components",
        "RunResult", "Prediction", "Knockdowns", "Scores")
_SUBPACKAGES = ("core", "plugins", "cli")

__all__ = ["__version__", "PtragError", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("ptrag.core.api"), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"ptrag.{name}")
    raise AttributeError(f"module 'ptrag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
