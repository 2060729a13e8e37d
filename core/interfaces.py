"""The four component interfaces and the tensors that flow between them.

Shapes: B cell sets per batch, S cells per set, G genes (expression features), E gene-embedding
dim, H hidden dim, K retrieved candidates, Q queries, N database entries.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import torch
from torch import nn


@dataclass
class CellSetBatch:
    """B cell sets: matched control cells, the perturbation, and (in training) the real cells."""

    ctrl: torch.Tensor  # [B,S,G] control cells of the same cell line (and batch where possible)
    pert_emb: torch.Tensor  # [B,E] gene embedding of the perturbed gene
    pert_index: torch.Tensor  # [B] long: index in the perturbation vocabulary (one-hot option)
    context_index: torch.Tensor  # [B] long: cell line index
    target: torch.Tensor | None = None  # [B,S,G] real perturbed cells (training only)
    batch_index: torch.Tensor | None = None  # [B,S] long: batch (gem_group) of each control cell
    query_entry: torch.Tensor | None = None  # [B] long: the query's own database entry, or -1
    neighbour_ids: torch.Tensor | None = None  # [B,K] long: stage-1 database ids, -1 = padding
    neighbour_scores: torch.Tensor | None = None  # [B,K] float: stage-1 cosine scores
    perts: list[str] = field(default_factory=list)  # B perturbation names, for diagnostics
    contexts: list[str] = field(default_factory=list)  # B cell line names

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "CellSetBatch":
        moved = {
            name: value.to(device, non_blocking=non_blocking)
            for name, value in self.__dict__.items()
            if isinstance(value, torch.Tensor)
        }
        return replace(self, **moved)

    def pin_memory(self) -> "CellSetBatch":
        """Tensors in page-locked memory, so copies to a GPU can overlap with compute."""
        return replace(self, **{n: v.pin_memory() for n, v in self.__dict__.items() if isinstance(v, torch.Tensor)})

    @property
    def shape(self) -> tuple[int, int, int]:
        b, s, g = self.ctrl.shape
        return b, s, g


# --------------------------------------------------------------------------- stage 1: retrieval


@dataclass
class RetrievalResult:
    """Top-K candidates per query, each row ordered by score (highest first, lower id first on
    ties). Always exactly K columns: when K exceeds the entries left after exclusion (K > N
    included) the row is clamped and padded with id -1 and score -inf; consumers mask on
    ``ids >= 0``. Cosine with a zero vector is 0."""

    scores: torch.Tensor  # [Q,K] float32, cosine similarity (higher is closer)
    ids: torch.Tensor  # [Q,K] int64, database row ids, -1 for padding

    @property
    def mask(self) -> torch.Tensor:
        return self.ids >= 0


class Retriever(abc.ABC):
    """Stage 1: nearest-neighbour search over the retrieval database's gene embeddings.

    Not differentiable. ``build`` indexes N keys (an empty database raises a one-line error);
    ``search`` returns the K most cosine-similar keys for each query (inputs need not be
    normalised), never returning an id listed in that query's ``exclude`` (negative ids are
    ignored). The contract is ``ptrag.core.testing.check_retriever``; see docs/retrievers.md.
    """

    name: ClassVar[str] = ""
    #: True when results are exact and identical across calls (contract-tested).
    exact: ClassVar[bool] = True
    #: False only when the retriever never reads gene embeddings; then a perturbation without
    #: one is kept (zero vector) instead of dropped. Third-party retrievers: True (the safe side).
    uses_gene_embeddings: ClassVar[bool] = True

    @staticmethod
    def similarity_features(x: np.ndarray) -> np.ndarray:
        """Features whose cosine is this retriever's similarity; the identity for plain cosine.

        A retriever that ranks by another cosine-family similarity overrides it (Pearson
        correlation is the cosine of row-centred vectors), and the contract checks in
        ``ptrag.core.testing`` then compare it with brute-force cosine of these features.
        """
        return x

    @abc.abstractmethod
    def build(self, keys: np.ndarray | torch.Tensor, meta: Any | None = None) -> None:
        """Index ``keys`` [N,E]; ``meta`` is optional per-entry information (a DataFrame)."""

    @abc.abstractmethod
    def search(
        self,
        queries: np.ndarray | torch.Tensor,
        k: int,
        exclude: Sequence[Sequence[int]] | None = None,
    ) -> RetrievalResult:
        """Top-``k`` entries for each of the Q ``queries`` [Q,E]; ``exclude[q]`` lists ids to skip."""

    @abc.abstractmethod
    def save(self, directory: str | Path) -> None:
        """Persist the index so prediction reuses exactly the index training used."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: str | Path) -> "Retriever":
        """Inverse of :meth:`save`."""

    def __len__(self) -> int:  # number of indexed entries
        return 0


# --------------------------------------------------------------------------- stage 2: selection


@dataclass
class CandidateRelations:
    """How each retrieved candidate relates to its query, for selectors that weigh evidence by kind.

    Computed by the model from the retrieval database; a selector asks for it by setting
    ``uses_relations = True`` and accepting a ``relations`` keyword.
    """

    same_gene: torch.Tensor  # [B,K] bool: the candidate is the query's own gene (in another cell line)
    same_context: torch.Tensor  # [B,K] bool: the candidate comes from the query's cell line
    has_deviation: torch.Tensor  # [B,K] bool: the candidate's gene is also measured in another line
    query_context: torch.Tensor  # [B] long: the query's cell-line index
    candidate_context: torch.Tensor  # [B,K] long: each candidate's cell-line index (n_contexts = unknown)


@dataclass
class SelectorOutput:
    """What a selector hands the generator."""

    context: torch.Tensor | None  # [B,S,H] summed contribution of the selected candidates
    weights: torch.Tensor | None  # [B,S,K] keep-weights (hard 0/1 for gumbel) or attention
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)  # already weighted
    stats: dict[str, float] = field(default_factory=dict)  # e.g. keep_ratio, for logging
    #: coefficients [B,S,K] of the candidates' observed responses ("response") and line-specific
    #: deviations ("deviation") in the predicted mean shift, for generators built on evidence
    evidence: dict[str, torch.Tensor] = field(default_factory=dict)


class Selector(nn.Module, abc.ABC):
    """Stage 2: scores candidates from (cell state, query, candidate) and aggregates them.

    forward(cell_state [B,S,H], query [B,H], candidates [B,K,H], scores [B,K] | None,
    mask [B,K] bool | None) -> SelectorOutput. A selector with ``uses_relations = True`` also
    receives ``relations=CandidateRelations``.
    """

    name: ClassVar[str] = ""
    #: whether forward() takes ``relations`` (same gene / same line / deviation available)
    uses_relations: ClassVar[bool] = False

    @abc.abstractmethod
    def forward(
        self,
        cell_state: torch.Tensor,
        query: torch.Tensor,
        candidates: torch.Tensor,
        scores: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> SelectorOutput: ...


# --------------------------------------------------------------------------- generation


class Generator(nn.Module, abc.ABC):
    """Control cell set + perturbation (+ retrieved context) -> predicted perturbed cell set.

    forward(batch: CellSetBatch, context [B,S,H] | None) -> predicted cells [B,S,G].
    Baselines set ``trainable = False`` and learn what they need in :meth:`fit`. A generator with
    ``uses_selection = True`` also receives the selector's whole output as ``selection=``.
    """

    name: ClassVar[str] = ""
    trainable: ClassVar[bool] = True
    #: whether this generator consumes a retrieved context (else the selector is skipped)
    uses_context: ClassVar[bool] = False
    #: False when the generator never reads a perturbation's gene embedding (one-hot, baselines
    #: that use observed responses only); may be set per instance from its parameters
    uses_gene_embeddings: ClassVar[bool] = True
    #: whether forward() takes ``selection`` (a SelectorOutput: weights, evidence coefficients)
    uses_selection: ClassVar[bool] = False

    def fit(self, database: Any) -> None:
        """See the training data's per-(perturbation, cell line) summary before training."""

    def encode(self, batch: CellSetBatch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Optional: cell states [B,S,H] and the query [B,H] a selector scores candidates from.

        Generators that consume a context implement it; ``None`` means no selector input.
        """
        return None

    @abc.abstractmethod
    def forward(self, batch: CellSetBatch, context: torch.Tensor | None = None) -> torch.Tensor: ...


# --------------------------------------------------------------------------- evaluation

Direction = Literal["lower", "higher"]
Space = Literal["genes", "pca50", "de"]


class Metric(abc.ABC):
    """A score for one (perturbation, cell line): predicted vs real cells, given control cells.

    ``space`` says where the evaluator computes it: ``genes`` (expression space), ``pca50``
    (50 PCs fitted on the real cells of the cell line) or ``de`` (differentially expressed genes).
    """

    name: ClassVar[str] = ""
    direction: ClassVar[Direction] = "lower"
    space: ClassVar[Space] = "genes"

    @abc.abstractmethod
    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        """pred [n,F], real [m,F], ctrl [c,F] in this metric's space -> one number."""


class SetMetric(Metric):
    """A metric that needs every held-out perturbation of a cell line at once (e.g. discrimination).

    The evaluator calls :meth:`compute_set` once per cell line with the groups in a fixed order
    and gets one value per group back; :meth:`compute` on a single group is undefined (NaN).
    A metric that needs the groups' names (e.g. to hand them to an external library) sets
    ``wants_groups``; it then also receives ``groups=[(perturbation, cell line), ...]``.
    """

    wants_groups: ClassVar[bool] = False

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        return float("nan")

    @abc.abstractmethod
    def compute_set(self, preds: Sequence[np.ndarray], reals: Sequence[np.ndarray], ctrl: np.ndarray) -> np.ndarray:
        """preds[i] [n_i,F], reals[i] [m_i,F] of the line's groups, ctrl [c,F] -> values [len(preds)]."""
