"""Bad-input cases: (filled in by issue 20)."""

from __future__ import annotations

from pathlib import Path

from .case import Case

CASES: list[Case] = []


def prepare(root: Path, env: dict[str, str]) -> None:
    """The files the cases above point at, named in ``env``."""
