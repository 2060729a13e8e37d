"""One bad-input case, and the CLI arguments the cases share."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

TINY = ["--set", "data.synth_preset=tiny"]
SMALL = ["--set", "data.synth_preset=tiny", "--set", "model.hidden_dim=16", "--set", "generator.n_layers=1",
         "--set", "generator.n_heads=2", "--set", "data.cell_set_len=8", "--set", "train.batch_size=2",
         "--set", "train.warmup_steps=1", "--set", "compare=[]", "--set", "retriever.k=4", "--device", "cpu"]
PM = ["--preset", "pert-mean", *TINY]


@dataclass
class Case:
    id: str
    args: list[str]  # CLI arguments; {name} is a prepared path, {new} a fresh folder of the case
    expect: str  # a fragment of the one error line, or of the warning when code == 0
    code: int = 1
    plugins: str = ""  # a folder under tests/fixtures put on sys.path (third-party plugins), e.g. "clash"
    why: str = ""


@contextlib.contextmanager
def fixture_on_path(name: str) -> Iterator[None]:
    """tests/fixtures/<name> (third-party plugin packages) importable for the block; its modules
    are forgotten afterwards, so the next case sees only the plugins it asks for."""
    folder = str(FIXTURES / name)
    loaded = set(sys.modules)
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(folder)
        for module in set(sys.modules) - loaded:
            if (getattr(sys.modules[module], "__file__", "") or "").startswith(folder):
                del sys.modules[module]
        importlib.invalidate_caches()
