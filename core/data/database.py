"""The retrieval database: one entry per training (perturbation, context)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .dataset import PerturbationData
from .split import Group


@dataclass
class ResponseDatabase:
    """Entries with their gene embedding, context, cell count and pseudobulk response.

    ``response`` is mean perturbed minus mean control of the same context, in expression space.
    """

    perts: list[str]
    contexts: list[str]
    n_cells: np.ndarray  # [N] int
    embeddings: np.ndarray  # [N,E] float32
    response: np.ndarray  # [N,G] float32
    control_mean: dict[str, np.ndarray]  # context -> [G]

    def __len__(self) -> int:
        return len(self.perts)

    @property
    def meta(self) -> pd.DataFrame:
        return pd.DataFrame({"pert": self.perts, "context": self.contexts, "n_cells": self.n_cells})

    @classmethod
    def from_data(
        cls, data: PerturbationData, groups: list[Group], embeddings: np.ndarray
    ) -> "ResponseDatabase":
        control_mean = {c: data.X[data.control_indices(c)].mean(axis=0) for c in data.contexts
                        if len(data.control_indices(c))}
        response = np.stack(
            [data.X[data.group_indices(p, c)].mean(axis=0) - control_mean[c] for p, c in groups]
        ).astype(np.float32) if groups else np.zeros((0, data.n_features), np.float32)
        return cls(
            perts=[p for p, _ in groups],
            contexts=[c for _, c in groups],
            n_cells=np.array([len(data.group_indices(p, c)) for p, c in groups], dtype=np.int64),
            embeddings=np.asarray(embeddings, dtype=np.float32),
            response=response,
            control_mean=control_mean,
        )

    def entries_of(self, pert: str, context: str | None = None) -> list[int]:
        return [i for i, (p, c) in enumerate(zip(self.perts, self.contexts))
                if p == pert and (context is None or c == context)]
