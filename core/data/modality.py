"""Two facts of a perturbation that change what evidence may be pooled: its modality and its arity.

Modality (``data.modality_col``, e.g. ``perturbation_type``): CRISPR interference lowers its target,
activation raises it, so one gene's responses under the two are not the same evidence. Each cell
line holds one modality (a line screened both ways is two lines for ptrag: give each its own
label), and evidence is pooled only between lines of one modality (data/database.py): the
same gene's response in other lines, retrieved neighbours, line-specific deviations. A learned
model still sees every training line and learns the lines apart.

Arity: a label joining genes with ``data.combination_sep`` (``A+B``) is a combinatorial
perturbation. ptrag predicts single-gene knock-downs, so those groups are left out with one note
naming how many, never read as a gene called ``A+B`` and never as one of its genes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .dataset import CONTEXT, PERT


def line_modalities(raw: pd.DataFrame, labels: pd.DataFrame, is_ctrl: np.ndarray, cfg: Any,
                    source: str) -> dict[str, str]:
    """Cell line -> modality of its perturbed cells ({} without ``data.modality_col``)."""
    col = getattr(cfg, "modality_col", None)
    if not col:
        return {}
    if col not in raw:
        present = list(raw.attrs.get("all_columns", raw.columns))
        raise DataError(f"{source}: obs has no modality column {col!r} (data.modality_col); columns: "
                        f"{', '.join(map(str, present)) or 'none'}")
    values = raw[col].astype(object).where(raw[col].notna(), None).to_numpy()[~is_ctrl]
    if any(v is None or str(v).strip() == "" for v in values):
        raise DataError(f"{source}: perturbed cells without a value in obs[{col!r}] (data.modality_col); fill it "
                        "for every perturbed cell (control cells may leave it empty)")
    frame = pd.DataFrame({"line": labels[CONTEXT].astype(str).to_numpy()[~is_ctrl], "modality": values.astype(str)})
    found = frame.groupby("line", sort=True)["modality"].unique()
    mixed = {line: sorted(m) for line, m in found.items() if len(m) > 1}
    if mixed:
        line, kinds = next(iter(mixed.items()))
        raise DataError(f"{source}: cell line {line} mixes modalities {', '.join(kinds)} in obs[{col!r}]; give each "
                        f"its own cell-line label (e.g. {line}-{kinds[0]}) so evidence of one is never pooled "
                        "with the other")
    return {line: str(m[0]) for line, m in found.items()}


def combination_groups(labels: pd.DataFrame, is_ctrl: np.ndarray, sep: str | None) -> np.ndarray:
    """Cells of combinatorial perturbations: labels with ``sep`` between two or more gene names."""
    if not sep:
        return np.zeros(len(labels), dtype=bool)
    names = labels[PERT].astype(str)
    parts = names.str.split(sep, regex=False)
    joined = parts.map(lambda p: len(p) >= 2 and all(x.strip() for x in p)).to_numpy(dtype=bool)
    return joined & ~is_ctrl


def combination_note(labels: pd.DataFrame, mask: np.ndarray, sep: str, source: str) -> str:
    groups = labels.loc[mask, PERT].astype(str).unique()
    first = ", ".join(sorted(groups)[:3])
    return (f"{source}: left out {len(groups)} combinatorial perturbation(s) ({int(mask.sum())} cells; labels joining "
            f"genes with {sep!r}, first: {first}): ptrag predicts single-gene knock-downs; set "
            f"data.combination_sep to another separator (or null) if {sep!r} belongs to your gene names")
