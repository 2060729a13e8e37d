"""Predict held-out groups through the whole model (retrieval -> selector -> generator).

Each group gets as many matched control cells as it has real cells (same cell line, same batch
where possible), cut into sets of at most ``cell_set_len`` cells, so predicted and real cells
are compared one-to-one in number. Alongside the predictions comes the retrieval trace: per
group and rank the candidate, its stage-1 score, its keep-weight (the mean over the group's
predicted cells of the keep decisions or weights the selector applied), the group's number of
predicted cells, and how closely the candidate's observed response resembles the group's real one
(Pearson over genes of the mean changes from control: the selection-quality diagnostic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.cellsets import CellSetSampler, step_seed
from ..data.split import Group
from ..evaluation.scoring import GroupPrediction
from ..model.compose import PtragModel
from ..model.neighbours import NeighbourTable
from ..progress import LoopProgress
from ..training.device import autocast
from .trace import TRACE_COLUMNS


@dataclass
class _Applied:
    """What the selector applied to one group's cells: keep-weights summed over cells, evidence."""

    weight_sum: torch.Tensor | None = None  # [K]
    n_cells: int = 0
    evidence: dict[str, torch.Tensor] | None = None  # kind -> [K] coefficients (the same in every chunk)

    def add(self, selection: Any, n: int) -> None:
        if selection.weights is not None:
            w = selection.weights[0].float().sum(0).cpu()  # [K] summed over the chunk's cells
            self.weight_sum = w if self.weight_sum is None else self.weight_sum + w
        if selection.evidence is not None:
            found = {"response": selection.evidence.response, "deviation": selection.evidence.deviation}
            self.evidence = {k: v[0].float().cpu() for k, v in found.items() if v is not None}
        self.n_cells += n


def _predict_group(model: PtragModel, sampler: CellSetSampler, group: Group, neighbours: NeighbourTable,
                   rng: np.random.Generator, device: torch.device, precision: str, n_cells: int | None = None
                   ) -> tuple[GroupPrediction, _Applied]:
    pert, context = group
    data, s = sampler.data, sampler.cell_set_len
    if n_cells is None:  # a measured group: one matched control per real cell
        real_idx = data.group_indices(pert, context)
        ctrl_idx = sampler.matched_controls(context, real_idx, rng)
        real = data.X[real_idx]
    else:  # never measured: n_cells controls of the line, no real cells
        ctrl_idx = sampler.control_draw(context, n_cells, rng)
        real = np.empty((0, data.n_features), dtype=np.float32)
    template = sampler.query_batch(group)
    preds, applied = [], _Applied()
    for start in range(0, len(ctrl_idx), s):
        chunk = ctrl_idx[start:start + s]
        batch = replace(template, ctrl=torch.from_numpy(data.X[chunk])[None],
                        batch_index=sampler.batch_index_of([chunk]))
        batch = neighbours.attach(batch).to(device)
        with autocast(device, precision):
            pred, selection = model(batch)
        preds.append(pred[0].float().cpu().numpy())
        applied.add(selection, len(chunk))
    prediction = GroupPrediction(pert, context, np.concatenate(preds), real, data.control_cells(context), ctrl_idx)
    return prediction, applied


def _similarity(response: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Pearson correlation of one response [G] with each candidate response [K,G] (0 when constant)."""
    a = response - response.mean()
    b = candidates - candidates.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum() * (b * b).sum(axis=1))
    return np.divide(b @ a, denom, out=np.zeros(len(b)), where=denom > 0)


def _trace_rows(prediction: GroupPrediction, neighbours: NeighbourTable, database: Any,
                applied: _Applied) -> list[dict]:
    pert, context = group = prediction.pert, prediction.context
    scores, ids = neighbours.rows([group])
    valid = [i for i in ids[0].tolist() if i >= 0]
    if len(prediction.real):
        real_change = prediction.real.mean(axis=0) - prediction.ctrl.mean(axis=0)
        similarity = dict(zip(valid, _similarity(real_change, np.asarray(database.response)[valid]), strict=True))
    else:  # an unmeasured group: nothing to compare the candidates with
        similarity = dict.fromkeys(valid, np.nan)
    rows = []
    for rank, (score, i) in enumerate(zip(scores[0].tolist(), ids[0].tolist(), strict=True)):
        if i < 0:
            continue
        keep = float(applied.weight_sum[rank] / applied.n_cells) if applied.weight_sum is not None else np.nan
        row = {"pert": pert, "context": context, "rank": rank, "candidate_pert": database.perts[i],
               "candidate_context": database.contexts[i], "stage1_score": float(score), "keep_weight": keep,
               "n_cells": applied.n_cells, "response_similarity": float(similarity[i])}
        if applied.evidence:  # an evidence selector weighs rather than keeps: kept = any non-zero coefficient
            row.update({f"{k}_coef": float(v[rank]) for k, v in applied.evidence.items()})
            row["keep_weight"] = float(any(abs(float(v[rank])) > 1e-6 for v in applied.evidence.values()))
        rows.append(row)
    return rows


@torch.no_grad()
def predict(model: PtragModel, sampler: CellSetSampler, groups: list[Group], neighbours: NeighbourTable, *,
            device: torch.device, precision: str = "auto", seed: int | None = None,
            positions: list[int] | None = None,
            rng: np.random.Generator | None = None, database: Any = None,
            log: Callable[[str], None] = lambda message: None,
            sizes: dict[Group, int] | None = None) -> tuple[list[GroupPrediction], pd.DataFrame]:
    """``GroupPrediction`` per group and the retrieval trace DataFrame (columns TRACE_COLUMNS);
    progress (bar on a terminal, plain lines through ``log`` elsewhere) per group.

    With ``seed``, each group's draws (matched controls; torch's generator for stochastic models)
    come from (seed, its position in the full list: ``positions``, default 0, 1, ...), so a group's
    prediction does not depend on which other groups are predicted, or by which process. Without
    it, one ``rng`` is drawn from group after group. ``sizes``: groups that were never measured
    (in-silico knock-downs), each predicted as that many cells from its line's control cells."""
    model.eval()
    database = database if database is not None else neighbours.database
    out, trace, cells = [], [], 0
    with LoopProgress("predicting", len(groups), log=log) as progress:
        for done, group in enumerate(groups, 1):
            if seed is not None:
                where = positions[done - 1] if positions is not None else done - 1
                rng = np.random.default_rng([seed, 2, where])
                torch.manual_seed(step_seed(seed, where, stream=2))
            prediction, applied = _predict_group(model, sampler, group, neighbours, rng, device, precision,
                                                 (sizes or {}).get(group))
            out.append(prediction)
            trace += _trace_rows(prediction, neighbours, database, applied)
            cells += applied.n_cells
            progress.update(done, cells_per_s=cells / max(progress.elapsed, 1e-9))
    columns = TRACE_COLUMNS + sorted({c for row in trace for c in row} - set(TRACE_COLUMNS))
    return out, pd.DataFrame(trace, columns=columns)
