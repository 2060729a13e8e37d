"""Checks on a screen before any training, each failing with one line that names file and fix.

``plan_cells`` works on the labels alone (cheap, before the matrix is read): required columns,
empty labels, duplicated cell names, control cells per cell line, and groups below ``min_cells``
(dropped and reported). ``ValueCheck`` accumulates NaN/inf, negative and non-integer values, the
value range and library sizes over the row blocks of the matrix as it is read, so raw counts and
all-zero or constant matrices are caught before any training (:func:`require_expression`).
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
    counts: dict[str, Any] = field(default_factory=dict)  # input/dropped cells and groups, first dropped


def plan_cells(obs: pd.DataFrame, cfg: Any, source: str) -> CellPlan:
    """Validate the labels and decide which cells to keep (all but groups below min_cells)."""
    present = list(obs.attrs.get("all_columns", obs.columns))
    for role, col in (("perturbation", cfg.pert_col), ("cell line", cfg.context_col)):
        if col not in obs:
            setting = "pert_col" if role == "perturbation" else "context_col"
            raise DataError(f"{source}: obs has no {role} column {col!r}; columns: "
                            f"{', '.join(map(str, present)) or 'none'} (set data.{setting})")
    notes: list[str] = []
    duplicated = obs.index.duplicated()
    if duplicated.any():
        notes.append(f"{source}: {int(duplicated.sum())} duplicated cell name(s) in obs (first: "
                     f"{_first(obs.index[duplicated].unique())}); every cell is kept, but cell-eval and scanpy "
                     "expect unique names (adata.obs_names_make_unique())")
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
        "dropped_first": [f"{p}/{c}" for p, c in small.index[:5]],
    }
    return CellPlan(obs=norm.loc[keep], keep=keep, notes=notes, counts=counts)


#: integer-valued matrices above this maximum are raw counts; non-integer ones above
#: NOT_LOG_MAX are normalised but not log-transformed (log1p of CP10k stays below ~10)
COUNTS_MAX, NOT_LOG_MAX = 15.0, 30.0


class ValueCheck:
    """Running statistics over the blocks of an expression matrix: NaN/inf, negative and
    non-integer values, the value range and the library size (row sum) of every cell."""

    def __init__(self, where: str, source: str):
        self.where, self.source = where, source
        self.nonfinite = 0
        self.bad_cells: list[str] = []
        self.negative = 0
        self.non_integer = 0  # counted until the first block that has any
        self.vmin, self.vmax = float("inf"), float("-inf")
        self._zeros, self._values = 0, 0
        self._library: list[np.ndarray] = []

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
        if not self.non_integer:  # one block with non-integer values settles it: skip the rest
            self.non_integer += int(np.count_nonzero(block != np.round(block)))
        self._library.append(block.sum(axis=1, dtype=np.float64))
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

    @property
    def median_library_size(self) -> float:
        return float(np.median(np.concatenate(self._library))) if self._library else float("nan")

    def expression_problem(self) -> str | None:
        """One line when the matrix cannot be log-normalised expression (raw counts, values too
        large for log1p data, all zeros, one constant value), else None."""
        if not self._values:
            return None
        head = f"{self.source}: {self.where}"
        if self.vmax == self.vmin == 0:
            return (f"{head} is all zeros, so there is nothing to learn or score; "
                    "check data.embed_key (the matrix ptrag reads)")
        if self.vmax == self.vmin:
            return (f"{head} holds one constant value ({self.vmax:.3g}) in every cell and gene, so there is nothing "
                    "to learn or score; check data.embed_key (the matrix ptrag reads)")
        library = f"median library size {self.median_library_size:,.0f}"
        if not self.non_integer and self.vmax > COUNTS_MAX:
            return (f"{head} looks like raw counts (integer values up to {self.vmax:,.0f}, {library}); ptrag expects "
                    "log-normalised expression: normalise and log1p it first (scanpy: sc.pp.normalize_total, then "
                    "sc.pp.log1p) or set data.embed_key to a log-normalised matrix")
        if self.vmax > NOT_LOG_MAX:
            return (f"{head} has values up to {self.vmax:,.4g} ({library}): normalised but not log-transformed? "
                    "ptrag expects log-normalised expression: apply log1p first (scanpy: sc.pp.log1p) or set "
                    "data.embed_key to a log-normalised matrix")
        return None

    def negative_message(self) -> str:
        return (f"{self.source}: {self.where} has {self.negative} negative value(s) (min {self.vmin:.3g}); "
                f"expected log-normalised expression, not scaled or centred data")


def require_expression(data: Any) -> None:
    """Raise the loader's expression problem (raw counts, constant matrix; see
    :meth:`ValueCheck.expression_problem`) before any training or prediction."""
    problem = (getattr(data, "info", None) or {}).get("expression_problem")
    if problem:
        raise DataError(problem)
