"""A run's cell files as mean changes from control, per held-out group and gene.

For each (perturbation, cell line) of predictions.h5ad and real.h5ad: the mean of its cells minus
the mean of the line's control cells (the block both files carry), gene by gene, in float32 as the
DE metrics compute it (plugins/metrics/de.py), so tables built on these changes agree with the
run's scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.loading import read_anndata
from ..markup import load_yaml, read_text


@dataclass
class Changes:
    groups: list[tuple[str, str]]  # (perturbation, cell line), held out and predicted
    genes: list[str]
    pred: np.ndarray  # [groups, genes] predicted mean change from control
    real: np.ndarray  # [groups, genes] real mean change from control

    def frame(self, which: str) -> pd.DataFrame:
        """``pred`` or ``real`` as a table: one row per group (MultiIndex), one column per gene."""
        return pd.DataFrame(getattr(self, which), index=pd.MultiIndex.from_tuples(self.groups), columns=self.genes)

    def strongest(self, n: int) -> list[tuple[str, str]]:
        """The ``n`` groups whose real change is largest (Euclidean norm over genes)."""
        size = np.linalg.norm(self.real.astype(np.float64), axis=1)
        return [self.groups[i] for i in np.argsort(-size, kind="stable")[:n]]


def run_columns(folder: Path) -> dict[str, str]:
    """The run's obs column names and control label, from its config.yaml."""
    path = Path(folder) / "config.yaml"
    data = (load_yaml(read_text(path), str(path)) or {}).get("data", {}) if path.is_file() else {}
    return {"pert_col": data.get("pert_col") or "gene", "context_col": data.get("context_col") or "cell_line",
            "control": data.get("control_label") or "non-targeting"}


def _means(path: Path, pert_col: str, context_col: str, control: str) -> tuple[dict, dict, list[str]]:
    """(group -> mean cell, cell line -> mean control cell, genes) of one cell file."""
    adata = read_anndata(path)
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    perts = adata.obs[pert_col].astype(str).to_numpy()
    lines = adata.obs[context_col].astype(str).to_numpy()
    rows = pd.Series(range(len(perts))).groupby([perts, lines], sort=False).indices
    groups = {g: X[idx].mean(axis=0) for g, idx in rows.items() if g[0] != control}
    controls = {g[1]: X[idx].mean(axis=0) for g, idx in rows.items() if g[0] == control}
    return groups, controls, [str(g) for g in adata.var_names]


def read_changes(folder: Path, pert_col: str | None = None, context_col: str | None = None,
                 control: str | None = None) -> Changes | None:
    """The run's predicted and real mean changes (None without both cell files or any group)."""
    folder = Path(folder)
    if not ((folder / "predictions.h5ad").is_file() and (folder / "real.h5ad").is_file()):
        return None
    given = {"pert_col": pert_col, "context_col": context_col, "control": control}
    columns = run_columns(folder) | {k: v for k, v in given.items() if v}
    pred, pred_ctrl, genes = _means(folder / "predictions.h5ad", **columns)
    real, real_ctrl, _ = _means(folder / "real.h5ad", **columns)
    groups = [g for g in real if g in pred and g[1] in pred_ctrl and g[1] in real_ctrl]
    if not groups:
        return None
    return Changes(groups, genes, np.stack([pred[g] - pred_ctrl[g[1]] for g in groups]),
                   np.stack([real[g] - real_ctrl[g[1]] for g in groups]))
