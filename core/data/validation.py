"""Checks on a screen before any training, each failing with one line that names file and fix.

``plan_cells`` works on the labels alone (cheap, before the matrix is read): required columns,
empty labels, control cells per cell line, and groups below ``min_cells`` (dropped and
reported). ``ValueCheck`` accumulates NaN/inf and negative values over the row blocks of the
matrix as it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .dataset import BATCH, CONTEXT, PERT


def _first(names, k: int = 5) -> str:
    names = list(names)
    return ", ".join(map(str, names[:k])) + (", ..." if len(names) > k else "")


@dataclass
class CellPlan:
    obs: pd.DataFrame  # kept cells, normalised columns pert/context(/batch)
    keep: np.ndarray  # [n_input_cells] bool
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def plan_cells(obs: pd.DataFrame, cfg: Any, source: str) -> CellPlan:
    """Validate the labels and decide which cells to keep (all but groups below min_cells)."""
    present = list(obs.attrs.get("all_columns", obs.columns))
    for role, col in (("perturbation", cfg.pert_col), ("cell line", cfg.context_col)):
        if col not in obs:
            raise DataError(f"{source}: obs has no {role} column {col!r}; columns: "
                            f"{', '.join(map(str, present)) or 'none'} (set data.{'pert_col' if role == 'perturbation' else 'context_col'})")
    notes: list[str] = []
    labels = {PERT: obs[cfg.pert_col], CONTEXT: obs[cfg.context_col]}
    if cfg.batch_col and cfg.batch_col in obs:
        labels[BATCH] = obs[cfg.batch_col]
    elif cfg.batch_col:
        notes.append(f"{source}: no batch column {cfg.batch_col!r}; controls are matched by cell line only")
    for name, values in labels.items():
        empty = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            col = {PERT: cfg.pert_col, CONTEXT: cfg.context_col, BATCH: cfg.batch_col}[name]
            raise DataError(f"{source}: {int(empty.sum())} cell(s) have no value in obs[{col!r}] "
                            f"(first: {_first(obs.index[empty])}); fill or remove them")
    norm = pd.DataFrame({k: pd.Categorical(v.astype(str).to_numpy()) for k, v in labels.items()},
                        index=obs.index)
    is_ctrl = (norm[PERT] == cfg.control_label).to_numpy()
    if not is_ctrl.any():
        top = norm[PERT].value_counts().index[:5]
        raise DataError(f"{source}: no control cells: obs[{cfg.pert_col!r}] has no {cfg.control_label!r}; "
                        f"most frequent labels: {_first(top)} (set data.control_label)")
    contexts = sorted(norm[CONTEXT].astype(str).unique())
    ctrl_contexts = set(norm.loc[is_ctrl, CONTEXT].astype(str))
    lacking = [c for c in contexts if c not in ctrl_contexts]
    if lacking:
        raise DataError(f"{source}: cell line(s) {_first(lacking)} (obs[{cfg.context_col!r}]) have no control cells "
                        f"({cfg.control_label!r}); remove those cells or fix obs[{cfg.pert_col!r}]")

    sizes = norm.loc[~is_ctrl].groupby([PERT, CONTEXT], observed=True).size()
    small = sizes[sizes < cfg.min_cells].sort_values()
    keep = np.ones(len(norm), dtype=bool)
    if len(small):
        pairs = pd.MultiIndex.from_frame(norm[[PERT, CONTEXT]].astype(str))
        drop = pairs.isin(pd.MultiIndex.from_tuples([(str(p), str(c)) for p, c in small.index])) & ~is_ctrl
        keep &= ~drop
        shown = [f"{p}/{c} ({n})" for (p, c), n in small.items()]
        notes.append(f"{source}: dropped {len(small)} perturbation group(s) with fewer than {cfg.min_cells} cells "
                     f"({int(drop.sum())} cells; first: {_first(shown)}); lower data.min_cells to keep them")
    counts = {
        "input_cells": int(len(norm)),
        "dropped_groups": int(len(small)),
        "dropped_cells": int((~keep).sum()),
    }
    return CellPlan(obs=norm.loc[keep], keep=keep, notes=notes, counts=counts)


class ValueCheck:
    """Running NaN/inf and negative-value counts over the blocks of an expression matrix."""

    def __init__(self, where: str, source: str):
        self.where, self.source = where, source
        self.nonfinite = 0
        self.bad_cells: list[str] = []
        self.negative = 0
        self.vmin, self.vmax = float("inf"), float("-inf")
        self._zeros, self._values = 0, 0

    def update(self, block: np.ndarray, cell_names) -> None:
        if block.size == 0:
            return
        finite = np.isfinite(block)
        if not finite.all():
            bad_rows = ~finite.all(axis=1)
            self.nonfinite += int((~finite).sum())
            self.bad_cells.extend(map(str, np.asarray(cell_names)[bad_rows][:5]))
            block = np.where(finite, block, 0)
        self.negative += int((block < 0).sum())
        self.vmin = min(self.vmin, float(block.min()))
        self.vmax = max(self.vmax, float(block.max()))
        self._zeros += int((block == 0).sum())
        self._values += block.size

    @property
    def zero_fraction(self) -> float:
        return self._zeros / self._values if self._values else float("nan")

    def raise_if_bad(self) -> None:
        if self.nonfinite:
            raise DataError(f"{self.source}: {self.where} has {self.nonfinite} NaN/inf value(s) "
                            f"(cells: {_first(self.bad_cells)}); remove or impute them before training")

    def negative_message(self) -> str:
        return (f"{self.source}: {self.where} has {self.negative} negative value(s) (min {self.vmin:.3g}); "
                f"expected log-normalised expression, not scaled or centred data")
