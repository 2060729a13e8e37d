"""Shared fixtures. Third-party plugins are found through real entry points: each fixture folder
holds `*.dist-info/entry_points.txt` and the plugin module, and is put on sys.path."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def _put_on_path(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Path:
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))  # for subprocesses
    importlib.invalidate_caches()
    return folder


@pytest.fixture
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working third-party plugin (ptrag-fake-plugin) and a broken one (ptrag-broken-plugin)."""
    yield _put_on_path(monkeypatch, FIXTURES / "site")
    for name in ("ptrag_fake_plugin", "ptrag_broken_plugin"):
        sys.modules.pop(name, None)


@pytest.fixture
def clash_plugin(monkeypatch: pytest.MonkeyPatch) -> Path:
    yield _put_on_path(monkeypatch, FIXTURES / "clash")
    sys.modules.pop("ptrag_clash_plugin", None)


@pytest.fixture
def oracle_package(monkeypatch: pytest.MonkeyPatch) -> Path:
    """ptrag-oracle: a generator that knows the real group means (read from $PTRAG_ORACLE_DATA) and two presets."""
    yield _put_on_path(monkeypatch, FIXTURES / "oracle")
    sys.modules.pop("ptrag_oracle", None)


@pytest.fixture
def odd_plugin(monkeypatch: pytest.MonkeyPatch) -> Path:
    yield _put_on_path(monkeypatch, FIXTURES / "unknownhook")
    sys.modules.pop("ptrag_odd_plugin", None)


@pytest.fixture(autouse=True)
def _not_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PTRAG_STRICT_PLUGINS", raising=False)


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread is fastest and avoids oversubscribing shared CI cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
