"""Checks on a screen before any training, each failing with one line that names file and fix.

``plan_cells`` works on the labels alone (cheap, before the matrix is read): required columns,
empty labels, duplicated cell names, control cells per cell line, labels that look like controls
but are not declared (:func:`control_like_labels`), a gene or cell line spelled in two ways
(:func:`spelling_variants`: ``CCT7`` and ``cct7 ``), and groups below ``min_cells`` (dropped and
reported). ``ValueCheck`` accumulates NaN/inf, negative and non-integer values, the
value range and library sizes over the row blocks of the matrix as it is read, so raw counts and
all-zero or constant matrices are caught before any training (:func:`require_expression`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .dataset import BATCH, CONTEXT, PERT
from .modality import combination_groups, combination_note, line_modalities


def _first(names, k: int = 5) -> str:
    names = list(names)
    return ", ".join(map(str, names[:k])) + (", ..." if len(names) > k else "")


@dataclass
class CellPlan:
    obs: pd.DataFrame  # kept cells, normalised columns pert/context(/batch)
    keep: np.ndarray  # [n_input_cells] bool
    notes: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)  # input/dropped cells and groups, first dropped
    control_like: str | None = None  # the undeclared control-like labels, when only reported (data inspect)
    modality: dict[str, str] = field(default_factory=dict)  # cell line -> modality (data.modality_col)


# --------------------------------------------------------------------------- control-like labels

#: how screens label control cells, compared as whole labels in lower case with '-', '_', '.' and
#: spaces removed (docs/data.md#control-like-labels). Guides against reporters (GFP, LacZ,
#: luciferase) are left out: in a line that carries the reporter they are real perturbations.
CONTROL_WORDS = frozenset({
    "nontargeting", "nontarget", "nontargetingcontrol", "ntc", "nt", "control", "ctrl", "negativecontrol",
    "negcontrol", "negctrl", "safetargeting", "safetargetingcontrol", "intergenic", "scramble", "scrambled",
    "empty", "emptyvector",
})
#: HGNC symbols among those spellings: as written (upper case) they name the gene, never a control
GENE_SYMBOLS = frozenset({"CTRL"})  # chymotrypsin like
_SEPARATORS = re.compile(r"[-_. ]+")
_NUMBERED = re.compile(r"(.*?)([-_. ]*)(\d+)")


def looks_like_control(label: str) -> bool:
    """Whether a whole label is a control's spelling, also numbered (``non-targeting_0042``,
    ``NTC-1``, ``control2``). A number must follow a separator after a short word, so that old
    symbols such as ``NT5`` (now NT5E) are genes, not controls."""
    text = str(label).strip()
    if text in GENE_SYMBOLS:
        return False
    text = text.lower()
    numbered = _NUMBERED.fullmatch(text)
    if numbered and (numbered.group(2) or len(_SEPARATORS.sub("", numbered.group(1))) >= 5):
        text = numbered.group(1)
    return _SEPARATORS.sub("", text) in CONTROL_WORDS


def control_like_labels(labels: pd.DataFrame, cfg: Any) -> list[tuple[str, int, list[str]]]:
    """(label, cells, cell lines) of every perturbation label that looks like a control but is
    neither ``data.control_label``, one of ``data.control_labels`` nor ``data.allow_control_like``:
    such cells would be held out and scored as a knock-down (one code path for run, predict,
    data split and data inspect)."""
    declared = {cfg.control_label, *getattr(cfg, "control_labels", ()), *getattr(cfg, "allow_control_like", ())}
    counts = labels[PERT].value_counts()
    found = [str(label) for label, n in counts.items() if n and str(label) not in declared
             and looks_like_control(str(label))]
    out = []
    for label in found:
        lines = sorted(labels.loc[(labels[PERT] == label).to_numpy(), CONTEXT].astype(str).unique())
        out.append((label, int(counts[label]), lines))
    return out


def control_like_message(found: list[tuple[str, int, list[str]]], cfg: Any, source: str) -> str:
    """One line: what was found (label, cells, cell lines, file, column) and how to declare it."""
    shown = "; ".join(f"{label!r}: {n:,} cell(s) in {', '.join(lines)}" for label, n, lines in found[:5])
    more = f"; +{len(found) - 5} more" if len(found) > 5 else ""
    names = ",".join(label for label, _, _ in found)
    flags = " ".join(f"--control-labels {label}" for label, _, _ in found[:3])
    return (f"{source}: obs[{cfg.pert_col!r}] has label(s) that look like controls but are not data.control_label "
            f"{cfg.control_label!r} ({shown}{more}), so their cells would be held out and scored as knock-downs; "
            f"declare them: in data.control_labels if they are control cells (ptrag run: --set "
            f"'data.control_labels=[{names}]'; ptrag data split/inspect and predict: {flags}), or in "
            "data.allow_control_like if they are real perturbations")


# --------------------------------------------------------------------------- one label per gene


def spelling(label: Any) -> str:
    """How labels are compared for identity: case and surrounding whitespace do not count
    (``CCT7``, ``cct7`` and ``CCT7 `` are one gene)."""
    return str(label).strip().casefold()


def spelling_variants(values: pd.Series) -> list[list[tuple[str, int]]]:
    """Groups of labels that differ only in case or surrounding whitespace, each label with its
    number of cells, most cells first."""
    counts = values.astype(str).value_counts()
    by_key: dict[str, list[tuple[str, int]]] = {}
    for label, n in counts.items():
        if n:
            by_key.setdefault(spelling(label), []).append((str(label), int(n)))
    return [group for group in by_key.values() if len(group) > 1]


def spelling_message(groups: list[list[tuple[str, int]]], col: str, what: str, source: str) -> str:
    """One line naming the file, the column and both spellings, and what to do."""
    first = groups[0]
    shown = " and ".join(f"{label!r} ({n:,} cells)" for label, n in first[:3])
    more = f"; {len(groups) - 1} more such {what}(s)" if len(groups) > 1 else ""
    return (f"{source}: obs[{col!r}] spells one {what} in {len(first)} ways, {shown}, differing only in case or "
            f"surrounding spaces{more}; ptrag would take them for different {what}s (one could train while the "
            f"other is held out and scored), so give every cell of a {what} the same label")


def _one_label_each(norm: pd.DataFrame, cfg: Any, source: str, control_like: str, notes: list[str]) -> None:
    """Refuse (or, when only reporting, note) a gene or cell line spelled in two ways."""
    for name, col, what in ((PERT, cfg.pert_col, "gene"), (CONTEXT, cfg.context_col, "cell line")):
        groups = spelling_variants(norm[name])
        if not groups:
            continue
        message = spelling_message(groups, col, what, source)
        if control_like == "error":
            raise DataError(message)
        notes.append(message)


def _merge_controls(norm: pd.DataFrame, cfg: Any, source: str, notes: list[str]) -> pd.DataFrame:
    """Cells of ``data.control_labels`` relabelled as ``data.control_label`` (they are controls too)."""
    extra = [label for label in getattr(cfg, "control_labels", ()) if label != cfg.control_label]
    if not extra:
        return norm
    pert = norm[PERT].astype(str)
    present = [label for label in extra if (pert == label).any()]
    absent = [label for label in extra if label not in present]
    if absent:
        notes.append(f"{source}: data.control_labels names {_first(map(repr, absent))}, which obs[{cfg.pert_col!r}] "
                     "lacks")
    if present:
        merged = pert.isin(present).to_numpy()
        notes.append(f"{source}: {int(merged.sum()):,} cell(s) labelled {_first(map(repr, present))} are counted as "
                     f"controls ({cfg.control_label!r}; data.control_labels)")
        norm = norm.copy()
        norm[PERT] = pd.Categorical(np.where(merged, cfg.control_label, pert.to_numpy()))
    return norm


def plan_cells(obs: pd.DataFrame, cfg: Any, source: str, *, control_like: str = "error") -> CellPlan:
    """Validate the labels and decide which cells to keep (all but groups below min_cells).
    Undeclared control-like labels stop here (``control_like="error"``: run, predict, data split)
    or are only recorded in the plan (``"report"``: data inspect, scoring given predictions)."""
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
    norm = _merge_controls(norm, cfg, source, notes)
    is_ctrl = (norm[PERT] == cfg.control_label).to_numpy()
    if not is_ctrl.any():
        top = norm[PERT].value_counts().index[:5]
        raise DataError(f"{source}: no control cells: obs[{cfg.pert_col!r}] has no {cfg.control_label!r}; "
                        f"most frequent labels: {_first(top)} (set data.control_label)")
    found = control_like_labels(norm, cfg)
    undeclared = control_like_message(found, cfg, source) if found else None
    if undeclared and control_like == "error":
        raise DataError(undeclared)
    _one_label_each(norm, cfg, source, control_like, notes)
    contexts = sorted(norm[CONTEXT].astype(str).unique())
    ctrl_contexts = set(norm.loc[is_ctrl, CONTEXT].astype(str))
    lacking = [c for c in contexts if c not in ctrl_contexts]
    if lacking:
        raise DataError(f"{source}: cell line(s) {_first(lacking)} (obs[{cfg.context_col!r}]) have no control cells "
                        f"({cfg.control_label!r}); remove those cells or fix obs[{cfg.pert_col!r}]")

    modality = line_modalities(obs, norm, is_ctrl, cfg, source)
    combined = combination_groups(norm, is_ctrl, getattr(cfg, "combination_sep", None))
    if combined.any():
        notes.append(combination_note(norm, combined, cfg.combination_sep, source))
    sizes = norm.loc[~is_ctrl & ~combined].groupby([PERT, CONTEXT], observed=True).size()
    small = sizes[sizes < cfg.min_cells].sort_values()
    keep = ~combined
    if len(small):
        pairs = pd.MultiIndex.from_frame(norm[[PERT, CONTEXT]].astype(str))
        drop = pairs.isin(pd.MultiIndex.from_tuples([(str(p), str(c)) for p, c in small.index])) & ~is_ctrl
        keep &= ~drop
        shown = [f"{p}/{c} ({n})" for (p, c), n in small.items()]
        notes.append(f"{source}: dropped {len(small)} perturbation group(s) with fewer than {cfg.min_cells} cells "
                     f"({int(drop.sum())} cells; first: {_first(shown)}); lower data.min_cells to keep them")
    counts = {
        "input_cells": int(len(norm)),
        "combination_groups": int(norm.loc[combined, PERT].nunique()) if combined.any() else 0,
        "dropped_groups": int(len(small)),
        "dropped_cells": int((~keep).sum()),
        "dropped_first": [f"{p}/{c}" for p, c in small.index[:5]],
    }
    return CellPlan(obs=norm.loc[keep], keep=keep, notes=notes, counts=counts, control_like=undeclared,
                    modality=modality)


#: a matrix whose values are all integers is raw counts, whatever its maximum (a shallow screen's
#: counts may stay below 10), once it has INTEGRAL_SAMPLE non-zero values (log1p of normalised counts
#: is essentially never an integer) or a value above COUNTS_MAX; non-integer values above NOT_LOG_MAX
#: are normalised but not log-transformed (log1p of CP10k stays below ~10)
COUNTS_MAX, NOT_LOG_MAX, INTEGRAL_SAMPLE = 15.0, 30.0, 1000


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
        head = f"{self.source}: {self.where}"
        if not self._values:
            return (f"{head} holds no values (no features, or no cells), so there is nothing to learn or score; "
                    "check data.embed_key (the matrix ptrag reads)")
        if self.vmax == self.vmin == 0:
            return (f"{head} is all zeros, so there is nothing to learn or score; "
                    "check data.embed_key (the matrix ptrag reads)")
        if self.vmax == self.vmin:
            return (f"{head} holds one constant value ({self.vmax:.3g}) in every cell and gene, so there is nothing "
                    "to learn or score; check data.embed_key (the matrix ptrag reads)")
        library = f"median library size {self.median_library_size:,.0f}"
        if not self.non_integer and (self.vmax > COUNTS_MAX or self._values - self._zeros >= INTEGRAL_SAMPLE):
            return (f"{head} looks like raw counts (integer values up to {self.vmax:,.0f}, {library}); ptrag expects "
                    "log-normalised expression: normalise it first (ptrag data prepare FILE -o NEW.h5ad, "
                    "docs/own-data.md; or scanpy's normalize_total and log1p) or set data.embed_key to a "
                    "log-normalised matrix")
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
