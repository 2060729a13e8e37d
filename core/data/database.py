"""The retrieval database: one entry per training (perturbation, context)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .dataset import BATCH, PerturbationData
from .split import Group
from .validation import spelling


@dataclass
class ResponseDatabase:
    """Entries with their gene embedding, context, cell count and pseudobulk response.

    ``response`` is mean perturbed minus mean *matched* control: controls of the same context,
    weighted by batch as the group's cells are (a batch without controls falls back to the
    context's mean), so batch effects do not leak into the response.
    """

    perts: list[str]
    contexts: list[str]
    n_cells: np.ndarray  # [N] int
    embeddings: np.ndarray  # [N,E] float32
    response: np.ndarray  # [N,G] float32
    control_mean: dict[str, np.ndarray]  # context -> [G]
    modality: dict[str, str] = field(default_factory=dict)  # context -> modality (data/modality.py); {} = one
    _by_pert: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for i, p in enumerate(self.perts):  # by spelling: a query of `cct7` must not retrieve `CCT7`
            self._by_pert.setdefault(spelling(p), []).append(i)

    def __len__(self) -> int:
        return len(self.perts)

    @property
    def meta(self) -> pd.DataFrame:
        return pd.DataFrame({"pert": self.perts, "context": self.contexts, "n_cells": self.n_cells})

    @classmethod
    def from_data(
        cls, data: PerturbationData, groups: list[Group], embeddings: np.ndarray
    ) -> ResponseDatabase:
        control_mean = {c: data.control_mean(c) for c in data.contexts if len(data.control_indices(c))}
        batch_mean = _batch_control_means(data)
        rows = []
        for p, c in groups:
            idx = data.group_indices(p, c)
            rows.append(data.group_mean(p, c) - _matched_mean(data, idx, c, control_mean, batch_mean))
        response = np.stack(rows).astype(np.float32) if rows else np.zeros((0, data.n_features), np.float32)
        return cls(
            perts=[p for p, _ in groups],
            contexts=[c for _, c in groups],
            n_cells=np.array([len(data.group_indices(p, c)) for p, c in groups], dtype=np.int64),
            embeddings=np.asarray(embeddings, dtype=np.float32),
            response=response,
            control_mean=control_mean,
            modality=dict(data.modality),
        )

    def comparable(self, context: str, other: str) -> bool:
        """Whether evidence from ``other`` may be pooled for a query in ``context``: the same
        modality (or no modality given)."""
        return self.modality.get(context) == self.modality.get(other)

    def entries_of(self, pert: str, context: str | None = None) -> list[int]:
        """The entries of gene ``pert`` (in ``context``), labels compared whatever their case and
        surrounding spaces (a screen spells each gene one way, data/validation.py; a screen given
        to ``ptrag predict`` may spell it otherwise than the run's)."""
        line = None if context is None else spelling(context)
        return [i for i in self._by_pert.get(spelling(pert), []) if line is None or spelling(self.contexts[i]) == line]

    def other_lines_mean(self) -> tuple[np.ndarray, np.ndarray]:
        """Per entry (gene g, line c): the mean response of g's entries in the *other* lines [N,G]
        (each line weighs the same; zeros where g has none) and whether there is any [N] bool.

        ``response - other_lines_mean`` is the entry's line-specific deviation: how the gene's
        response in this line departs from its response elsewhere (docs/architecture.md, "What
        measurement taught us").
        """
        out = np.zeros_like(self.response)
        has = np.zeros(len(self), dtype=bool)
        for rows in self._by_pert.values():
            for i in rows:
                others = [j for j in rows if j != i and self.comparable(self.contexts[i], self.contexts[j])]
                if not others:
                    continue
                if len(others) == len(rows) - 1:  # every other line: the sum once, as ever
                    out[i] = (self.response[rows].sum(axis=0) - self.response[i]) / len(others)
                else:
                    out[i] = self.response[others].mean(axis=0)
                has[i] = True
        return out, has

    def exclusion_ids(self, pert: str, context: str, exclude_same_gene: bool) -> list[int]:
        """Entries a query (pert, context) must not retrieve: its own entry always, the same gene's
        entries in other contexts when ``exclude_same_gene`` (the paper's setting), and every entry
        of another modality (data/modality.py)."""
        own = self.entries_of(pert, None if exclude_same_gene else context)
        if not self.modality:
            return own
        other = [i for i, c in enumerate(self.contexts) if not self.comparable(context, c)]
        return sorted(set(own) | set(other))


def _batch_control_means(data: PerturbationData) -> dict[tuple[str, str], np.ndarray]:
    if BATCH not in data.obs:
        return {}
    out = {}
    for c in data.contexts:
        ctrl = data.control_indices(c)
        batches = data.batches_of(ctrl)
        for b in np.unique(batches):
            out[(c, str(b))] = data.control_mean(c, b)
    return out


def _matched_mean(data, idx, context, control_mean, batch_mean) -> np.ndarray:
    if not batch_mean:
        return control_mean[context]
    batches, counts = np.unique(data.batches_of(idx), return_counts=True)
    parts = [batch_mean.get((context, str(b)), control_mean[context]) * n
             for b, n in zip(batches, counts, strict=False)]
    return np.sum(parts, axis=0) / counts.sum()
