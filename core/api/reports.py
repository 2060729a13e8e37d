"""Reading finished runs back: ``ptrag report`` and ``ptrag ablate`` from Python."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..components.manager import PluginManager, build_manager
from ..reporting.report import build_report
from ..reporting.tables import rich_table
from ..runs import marker
from ..runs.ablate import Grid, load_grid, run_grid
from ..runs.folder import occupied
from .boundary import one_error, threads_kept

load_grid = one_error(load_grid)


@one_error
def report(runs: Sequence[str | os.PathLike], out: str | os.PathLike, *, compare: tuple[str, str] | None = None,
           genes: Sequence[str] | None = None, against: str | None = None) -> dict:
    """Table, paired comparison, figures and report.html of finished runs (``ptrag report``); with
    ``against``, every run paired with that baseline setting by setting (wins / ties / losses). A
    report that fails (a bad run, a full disk) removes the files it wrote and the folders it made."""
    marker.adopt(Path(out))  # <run>/report (ptrag report's default) goes with its run
    with occupied(Path(out), keep_changed=True):
        marker.take(Path(out), "report")  # the user's files there stay, and are never written over
        return build_report(runs, out, compare=compare, genes=genes, against=against)


@one_error
def ablate(grid: Grid | str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
           set: Sequence[str] = (), log: Callable[[str], None] = lambda message: None,
           manager: PluginManager | None = None) -> pd.DataFrame:
    """Every (configuration, seed) of a grid (a YAML path, or :func:`load_grid`'s result) into
    ``out`` (``ptrag ablate``), ``set`` overrides applied to every run; returns the comparison table."""
    spec = grid if isinstance(grid, Grid) else load_grid(grid)
    spec = replace(spec, sets=[*spec.sets, *([set] if isinstance(set, str) else set)])
    with threads_kept():
        return run_grid(spec, Path(out), manager or build_manager(), log=log, overwrite=overwrite)


__all__ = ["report", "ablate", "load_grid", "rich_table"]
