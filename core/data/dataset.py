"""A perturbation screen: expression, per-cell labels, group lookups and group means."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from .store import BackedStore, HalfStore

PERT, CONTEXT, BATCH = "pert", "context", "batch"

#: rows come back as float32 from each: ``X[idx]`` (see :mod:`store`)
Expression = np.ndarray | HalfStore | BackedStore


@dataclass
class StreamedMeans:
    """Group and control means summed while a backed file was streamed, so building the retrieval
    database reads nothing from disk again."""

    groups: dict[tuple[str, str], np.ndarray]  # (pert, context) -> [G]
    controls: dict[tuple[str, str | None], tuple[np.ndarray, int]]  # (context, batch) -> ([G], cells)


@dataclass
class PerturbationData:
    """Expression [n_cells, n_features] with normalised labels in ``obs`` (pert, context, batch).

    ``columns`` maps the normalised names back to the user's column names so outputs carry the
    input's schema.
    """

    X: Expression
    obs: pd.DataFrame
    features: list[str]
    control_label: str
    source: str = "<memory>"
    columns: dict[str, str | None] = field(default_factory=dict)
    #: what loading reported (dropped groups, warnings); the run log shows these lines
    notes: list[str] = field(default_factory=list)
    #: facts about the input for summaries: expression source, storage, dropped counts
    info: dict = field(default_factory=dict)
    #: ground truth of the built-in dataset (``uns['ptrag_synth']``), else None
    truth: dict | None = None
    #: means from the loading pass (backed mode); else means are computed from ``X``
    means: StreamedMeans | None = field(default=None, repr=False)
    #: cell line -> modality of its perturbations (data.modality_col; data/modality.py), else empty
    modality: dict[str, str] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @cached_property
    def is_control(self) -> np.ndarray:
        return (self.obs[PERT] == self.control_label).to_numpy()

    @cached_property
    def _group_index(self) -> dict[tuple[str, str], np.ndarray]:
        perturbed = self.obs.loc[~self.is_control, [PERT, CONTEXT]]
        positions = np.flatnonzero(~self.is_control)  # groupby gives positions within `perturbed`
        return {
            (str(p), str(c)): positions[np.asarray(idx, dtype=np.int64)]
            for (p, c), idx in perturbed.groupby([PERT, CONTEXT], observed=True, sort=True).indices.items()
        }

    @cached_property
    def _control_index(self) -> dict[str, np.ndarray]:
        controls = self.obs.loc[self.is_control, [CONTEXT]]
        positions = np.flatnonzero(self.is_control)
        return {
            str(c): positions[np.asarray(idx)]
            for c, idx in controls.groupby(CONTEXT, observed=True, sort=True).indices.items()
        }

    @property
    def groups(self) -> list[tuple[str, str]]:
        """All (perturbation, context) groups of perturbed cells, sorted."""
        return list(self._group_index)

    @property
    def contexts(self) -> list[str]:
        return sorted(self.obs[CONTEXT].astype(str).unique())

    @property
    def perturbations(self) -> list[str]:
        return sorted({p for p, _ in self._group_index})

    def group_indices(self, pert: str, context: str) -> np.ndarray:
        return self._group_index[(pert, context)]

    def control_indices(self, context: str) -> np.ndarray:
        return self._control_index.get(context, np.empty(0, dtype=np.int64))

    def batches_of(self, indices: np.ndarray) -> np.ndarray | None:
        return None if self._batch_labels is None else self._batch_labels[indices]

    @cached_property
    def _batch_labels(self) -> np.ndarray | None:  # once: a str copy per call cost minutes at 600k cells
        return self.obs[BATCH].astype(str).to_numpy() if BATCH in self.obs else None

    def n_cells_of(self, pert: str, context: str) -> int:
        idx = self._group_index.get((pert, context))
        return 0 if idx is None else len(idx)

    def group_mean(self, pert: str, context: str) -> np.ndarray:
        """Mean expression [G] of a (perturbation, context) group."""
        if self.means is not None:
            return self.means.groups[(pert, context)]
        return self.X[self.group_indices(pert, context)].mean(axis=0)

    def control_mean(self, context: str, batch: str | None = None) -> np.ndarray:
        """Mean expression [G] of a context's control cells (of one batch when given)."""
        if self.means is not None:
            parts = [(m, n) for (c, b), (m, n) in self.means.controls.items()
                     if c == context and (batch is None or b == str(batch))]
            total = sum(n for _, n in parts)
            return (sum(m.astype(np.float64) * n for m, n in parts) / total).astype(np.float32)
        idx = self.control_indices(context)
        if batch is not None:
            idx = idx[self.batches_of(idx) == str(batch)]
        return self.X[idx].mean(axis=0)

    def control_cells(self, context: str) -> np.ndarray:
        """All control cells [c,G] of a context, read once and shared (read-only) by every caller."""
        if context not in self._control_cells:
            block = self.X[self.control_indices(context)]
            block.setflags(write=False)
            self._control_cells[context] = block
        return self._control_cells[context]

    @cached_property
    def _control_cells(self) -> dict[str, np.ndarray]:
        return {}

    def drop_records(self) -> list[dict]:
        """The loader's drops (groups below data.min_cells) as drop records like ``Split.drops``."""
        if not self.info.get("dropped_groups"):
            return []
        return [{"reason": "fewer than data.min_cells cells", "groups": {"data": int(self.info["dropped_groups"])},
                 "cells": int(self.info.get("dropped_cells", 0)), "first": list(self.info.get("dropped_first", []))}]

    def summary(self) -> pd.DataFrame:
        """Per context: cells, controls, perturbations, batches (for `ptrag data inspect`)."""
        rows = []
        for c in self.contexts:
            in_c = (self.obs[CONTEXT] == c).to_numpy()
            rows.append({
                "context": c,
                "cells": int(in_c.sum()),
                "controls": len(self.control_indices(c)),
                "perturbations": sum(1 for _, gc in self._group_index if gc == c),
                "batches": int(self.obs.loc[in_c, BATCH].nunique()) if BATCH in self.obs else 0,
            })
        return pd.DataFrame(rows, columns=["context", "cells", "controls", "perturbations", "batches"])
