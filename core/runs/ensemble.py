"""Ensembles that combine whole groups (``capabilities.combines == "groups"``, e.g. ``stack``).

Each member's prediction of a (perturbation, cell line) group is taken once: what the member's own
run wrote for that group in its ``predictions.h5ad`` (the test groups of the run it is a member
of), else what its model predicts now through the ordinary prediction path, with its run's seed
and the group's position (validation groups; new data in ``ptrag predict``). The ensemble's
``combine`` turns the members' cells of a group into the group's predicted cells, so an
ensemble's predictions are its formula applied to its members' saved outputs, exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..components.guards import calling, check_combined, who
from ..data.dataset import CONTEXT, PERT, PerturbationData
from ..data.loading import read_anndata
from ..data.split import Group
from ..evaluation.scoring import GroupPrediction
from ..files import write_csv
from ..interfaces import Generator, MemberCells
from .cells import CONTROL_CELL, PREDICTIONS_DIGEST, column_names
from .fingerprints import file_digest
from .reload import LoadedRun, predict_loaded
from .results import run_record
from .trace import TRACE_COLUMNS

Log = Callable[[str], None]


class GroupMembers:
    """An ensemble's member runs as whole-group predictors on one screen, each group predicted once.

    ``reuse_saved``: take a member's cells of a group from its ``predictions.h5ad`` when it holds
    them (an ensemble run on the screen its members ran on); never for other data."""

    def __init__(self, runs: dict[str, LoadedRun], data: PerturbationData, *, reuse_saved: bool,
                 log: Log = lambda message: None, sizes: dict[Group, int] | None = None):
        self.runs, self.data, self.log, self.sizes = runs, data, log, sizes  # sizes: unmeasured groups
        self.saved = {preset: saved_predictions(run.run_dir, data, log) if reuse_saved else {}
                      for preset, run in runs.items()}
        self._predicted: dict[tuple[str, Group, int], GroupPrediction] = {}
        self.drops: list[dict] = []

    def predictions(self, preset: str, groups: Sequence[Group], positions: Sequence[int]
                    ) -> dict[Group, GroupPrediction]:
        """Member ``preset``'s prediction of each of ``groups`` it can predict (saved, cached, or now)."""
        saved = self.saved[preset]
        todo = [(g, p) for g, p in zip(groups, positions, strict=True)
                if g not in saved and (preset, g, p) not in self._predicted]
        if todo:
            preds, _, drops = predict_loaded(self.runs[preset], self.data, [g for g, _ in todo],
                                             positions=[p for _, p in todo], log=self.log, sizes=self.sizes)
            self.drops += [{**d, "member": preset} for d in drops]
            by_group = {(p.pert, p.context): p for p in preds}
            self._predicted.update({(preset, g, p): by_group[g] for g, p in todo if g in by_group})
        found = {g: saved.get(g) or self._predicted.get((preset, g, p)) for g, p in zip(groups, positions, strict=True)}
        return {g: pred for g, pred in found.items() if pred is not None}

    def cells(self, members: Sequence[str], groups: Sequence[Group], positions: Sequence[int],
              *, with_real: bool = False) -> list[tuple[MemberCells, GroupPrediction]]:
        """Per group that every member predicted: the ensemble's view of it, and the first member's
        prediction (whose real cells, controls and matched controls the ensemble's prediction keeps)."""
        by_member = {m: self.predictions(m, groups, positions) for m in members}
        out = []
        for group in groups:
            if not all(group in by_member[m] for m in members):
                continue  # a member left it out (its drop record says why)
            first = by_member[members[0]][group]
            view = MemberCells(group[0], group[1], {m: by_member[m][group].pred for m in members},
                               real=first.real if with_real else None)
            out.append((view, first))
        return out


def saved_predictions(run_dir: Path, data: PerturbationData, log: Log = lambda message: None
                      ) -> dict[Group, GroupPrediction]:
    """A finished run's predicted cells per group, from its predictions.h5ad, with the matched
    control cells it names; a group whose cells do not match ``data`` (another screen, a file
    written before ptrag named the controls, matched "controls" that are not control cells of the
    group's line) is not reused, and none is when the file is not the one the run wrote (its hash
    in metrics.json differs: edited by hand): the member predicts those groups again."""
    path = Path(run_dir) / "predictions.h5ad"
    if not path.is_file():
        return {}
    recorded = (run_record(run_dir).get("outputs") or {}).get(PREDICTIONS_DIGEST)
    if recorded and file_digest(path) != recorded:
        log(f"note: {path} is not the file its run wrote (its content changed since), so the ensemble does not "
            "reuse it: the member predicts its groups again")
        return {}
    pred = read_anndata(path)
    names = column_names(data)
    if CONTROL_CELL not in pred.obs or list(pred.var_names) != [str(f) for f in data.features]:
        return {}
    rows = pred.obs.groupby([names[PERT], names[CONTEXT]], observed=True, sort=False).indices
    cell_row = pd.Index(data.obs.index.astype(str))
    out = {}
    for group in data.groups:
        if group not in rows:
            continue
        at = np.sort(rows[group])
        ctrl_index = cell_row.get_indexer(pred.obs[CONTROL_CELL].iloc[at].astype(str))
        real_idx = data.group_indices(*group)
        if len(at) != len(real_idx) or (ctrl_index < 0).any() or \
                not np.isin(ctrl_index, data.control_indices(group[1])).all():
            continue
        out[group] = GroupPrediction(group[0], group[1], np.asarray(pred.X[at], dtype=np.float32),
                                     data.X[real_idx], data.control_cells(group[1]), ctrl_index)
    return out


def combine_groups(generator: Generator, members: GroupMembers, groups: Sequence[Group],
                   positions: Sequence[int], *, nonnegative: bool = True) -> list[GroupPrediction]:
    """The ensemble's prediction of each group every member predicted (in ``groups``' order)."""
    out = []
    for view, first in members.cells(generator.capabilities.members, groups, positions):
        with calling(generator, "combine"):
            combined = generator.combine(view)
        cells = check_combined(combined, first.pred.shape[1], who(generator), f"{view.pert} in {view.context}")
        cells = np.maximum(cells, 0.0) if nonnegative else cells
        out.append(GroupPrediction(view.pert, view.context, cells.astype(np.float32), first.real, first.ctrl,
                                   first.ctrl_index if len(cells) == len(first.pred) else None))
    return out


def empty_trace() -> pd.DataFrame:
    """An ensemble retrieves nothing itself: its retrieval trace is empty."""
    return pd.DataFrame(columns=TRACE_COLUMNS)


def write_calibration_table(run_dir: Path, views: Sequence[MemberCells], data: PerturbationData) -> Path:
    """calibration.csv: what an ensemble was fitted on, one row per (validation group, gene): the
    mean of the cell line's control cells, the group's real mean and each member's mean over the
    group's predicted cells."""
    blocks = []
    for view in views:
        block: dict[str, Any] = {"pert": view.pert, "context": view.context, "gene": [str(f) for f in data.features],
                                 "control": data.control_cells(view.context).mean(axis=0),
                                 "real": np.asarray(view.real).mean(axis=0)}
        block.update({m: np.asarray(cells).mean(axis=0) for m, cells in view.members.items()})
        blocks.append(pd.DataFrame(block))
    path = Path(run_dir) / "calibration.csv"
    write_csv(path, pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame())
    return path
