"""The four component contracts and the records that flow between them.

Every call has one shape: a selector's ``forward`` takes one :class:`SelectionInput`, a
generator's ``forward`` one :class:`GenerationInput`, a set metric's ``compute_set`` one
:class:`LineCells`; each record is always passed, whatever the component. What a component does
is *declared* in its ``capabilities`` (a frozen dataclass per kind), so the engine never checks a
component's name or passes extra arguments depending on flags. The checks in
``ptrag.core.testing`` hold every component to this contract (docs/writing-a-plugin.md).

Predicted cells are log1p-like expression: never negative (the model floors them at 0) and, in
the files written for Arc Institute's cell-eval, below :data:`CELL_EVAL_MAX`.

Shapes: B cell sets per batch, S cells per set, G genes (expression features), E gene-embedding
dim, H hidden dim, K retrieved candidates, Q queries, N database entries.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

#: the largest value cell-eval accepts (it wants values < 15); written files are clipped to it
CELL_EVAL_MAX = float(np.nextafter(np.float32(15.0), np.float32(0.0)))


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

    def to(self, device: torch.device | str, non_blocking: bool = False) -> CellSetBatch:
        moved = {
            name: value.to(device, non_blocking=non_blocking)
            for name, value in self.__dict__.items()
            if isinstance(value, torch.Tensor)
        }
        return replace(self, **moved)

    def pin_memory(self) -> CellSetBatch:
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


@dataclass(frozen=True)
class RetrieverCapabilities:
    """What a retriever does. ``k`` is the candidates per query this instance returns (its ``k``
    parameter); ``retrieves`` is False only for a stand-in that never returns any (``none``)."""

    k: int = 0
    retrieves: bool = True
    exact: bool = True  # results exact and identical across calls (contract-tested)
    reads_gene_embeddings: bool = True  # False: a gene without an embedding need not be dropped


class Retriever(abc.ABC):
    """Stage 1: nearest-neighbour search over the retrieval database's gene embeddings.

    Not differentiable. ``build`` indexes N keys (an empty database raises a one-line error);
    ``search`` returns the K most cosine-similar keys for each query (inputs need not be
    normalised), never returning an id listed in that query's ``exclude`` (negative ids are
    ignored). Its factory sets ``capabilities`` (at least ``k``). Contract:
    ``ptrag.core.testing.check_retriever``; docs/retrievers.md.
    """

    #: the name the component was registered under (set by the engine when it builds one)
    name: str = ""
    capabilities: RetrieverCapabilities = RetrieverCapabilities()

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
    def load(cls, directory: str | Path) -> Retriever:
        """Inverse of :meth:`save`."""

    def __len__(self) -> int:  # number of indexed entries
        return 0


# --------------------------------------------------------------------------- stage 2: selection


@dataclass
class CandidateRelations:
    """How each retrieved candidate relates to its query (computed from the retrieval database)."""

    same_gene: torch.Tensor  # [B,K] bool: the candidate is the query's own gene (in another cell line)
    same_context: torch.Tensor  # [B,K] bool: the candidate comes from the query's cell line
    has_deviation: torch.Tensor  # [B,K] bool: the candidate's gene is also measured in another line
    query_context: torch.Tensor  # [B] long: the query's cell-line index
    candidate_context: torch.Tensor  # [B,K] long: each candidate's cell-line index (n_contexts = unknown)


@dataclass
class CellEncoding:
    """A generator's view of a batch that a selector scores candidates against."""

    states: torch.Tensor  # [B,S,H] one state per control cell
    query: torch.Tensor  # [B,H] the perturbation (and cell line)


@dataclass
class SelectionInput:
    """Everything a selector may use, always passed whole."""

    cell_states: torch.Tensor  # [B,S,H]
    query: torch.Tensor  # [B,H]
    candidates: torch.Tensor  # [B,K,H] encoded database entries; zero rows at padding
    scores: torch.Tensor  # [B,K] stage-1 cosine, -inf at padding
    mask: torch.Tensor  # [B,K] bool: a real candidate (not padding)
    relations: CandidateRelations | None = None  # filled when the selector declares needs_relations
    batch: CellSetBatch | None = None  # the cell sets themselves


@dataclass
class EvidenceWeights:
    """Coefficients on the candidates' observed responses (and line-specific deviations: the
    response in the candidate's line minus its gene's mean response in the other lines) that
    make up the predicted mean shift: shift = sum_k response[k] r_k + deviation[k] d_k."""

    response: torch.Tensor  # [B,K]
    deviation: torch.Tensor | None = None  # [B,K]


@dataclass
class SelectorOutput:
    """What a selector hands the generator."""

    context: torch.Tensor | None  # [B,S,H] summed contribution of the selected candidates
    weights: torch.Tensor | None  # [B,S,K] keep decisions (hard 0/1 for gumbel) or attention weights
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)  # already weighted
    stats: dict[str, float] = field(default_factory=dict)  # e.g. keep_ratio, for logging
    evidence: EvidenceWeights | None = None  # for generators built on observed responses


@dataclass(frozen=True)
class SelectorCapabilities:
    """``selects`` is False only for a selector that ignores its candidates (``none``): the
    engine then skips candidate encoding. ``stochastic``: the selector draws random numbers at
    evaluation too; the engine seeds each draw, so a run repeats exactly."""

    selects: bool = True
    needs_relations: bool = False
    stochastic: bool = False


class Selector(nn.Module, abc.ABC):
    """Stage 2: weighs (or keeps/drops) the candidates per cell; ``forward(SelectionInput)``."""

    name: str = ""
    capabilities: SelectorCapabilities = SelectorCapabilities()

    @abc.abstractmethod
    def forward(self, inputs: SelectionInput) -> SelectorOutput: ...


# --------------------------------------------------------------------------- generation


@dataclass
class GenerationInput:
    """Everything a generator may use, always passed whole. ``selection`` is None when the run has
    no retrieval (or the generator does not use it)."""

    batch: CellSetBatch
    encoding: CellEncoding | None = None  # generator.encode(batch), computed once per forward
    selection: SelectorOutput | None = None

    @property
    def context(self) -> torch.Tensor | None:
        """The selected context [B,S,H], if any."""
        return None if self.selection is None else self.selection.context


@dataclass
class MemberCells:
    """One (perturbation, cell line) as an ensemble that combines whole groups sees it.

    ``members``: each member preset's predicted cells for the group, all of them: what the
    member's own run wrote for it, or, for a group that run did not predict (validation, new
    data), what its model predicts now with the same seed and position. ``real``: the group's real
    cells, given on validation groups only (for calibration)."""

    pert: str
    context: str
    members: Mapping[str, np.ndarray]  # preset -> [n_m,G]
    real: np.ndarray | None = None  # [m,G]


@dataclass(frozen=True)
class GeneratorCapabilities:
    """``trainable``: learns by gradient steps (else only in ``fit``); ``uses_retrieval``: consumes
    a selection (its ``encode`` then returns a :class:`CellEncoding` for the selector).

    An ensemble declares ``members``: the presets whose trained runs it combines (the engine runs
    or reuses them on the same data, split, seed and budget). ``combines`` says how: ``sets``
    (members are functions of a cell-set batch, handed over in :meth:`Generator.attach_members`,
    and ``forward`` combines them set by set) or ``groups`` (each member's prediction of a whole
    (perturbation, cell line) group is computed once, or read from its run folder, and
    :meth:`Generator.combine` combines them group by group; :meth:`Generator.calibrate_groups`
    fits on validation groups). ``calibrates``: it fits something on the validation groups.
    ``protects_start``: its state before training or calibration is a strong baseline, which the
    engine keeps unless the trained or calibrated state is better on validation on both energy
    and pearson-delta."""

    trainable: bool = True
    uses_retrieval: bool = False
    reads_gene_embeddings: bool = True
    members: tuple[str, ...] = ()
    calibrates: bool = False
    protects_start: bool = False
    combines: Literal["sets", "groups"] = "sets"


class Generator(nn.Module, abc.ABC):
    """Control cell set + perturbation (+ retrieved selection) -> predicted perturbed cell set."""

    name: str = ""
    capabilities: GeneratorCapabilities = GeneratorCapabilities()

    def fit(self, database: Any) -> None:
        """See the training data's per-(perturbation, cell line) summary before training."""

    def encode(self, batch: CellSetBatch) -> CellEncoding | None:
        """Cell states and query for a selector; required when ``uses_retrieval``."""
        return None

    def attach_members(self, members: Mapping[str, Callable[[CellSetBatch], torch.Tensor]]) -> None:
        """The trained ``members`` (preset -> predicted cells [B,S,G] for a batch), for ensembles."""

    def calibrate(self, batches: Sequence[CellSetBatch]) -> dict[str, Any]:
        """Fit on validation cell sets (with ``target``); what was fitted, for metrics.json."""
        return {}

    def combine(self, group: MemberCells) -> np.ndarray:
        """An ensemble that ``combines`` groups: the group's predicted cells [n,G] from its members'."""
        raise NotImplementedError(f"{type(self).__name__} does not combine whole groups")

    def calibrate_groups(self, groups: Sequence[MemberCells]) -> dict[str, Any]:
        """An ensemble that ``combines`` groups: fit on validation groups (``real`` given); what was
        fitted, for metrics.json."""
        return {}

    @abc.abstractmethod
    def forward(self, inputs: GenerationInput) -> torch.Tensor:
        """Predicted cells [B,S,G]."""


# --------------------------------------------------------------------------- evaluation

Direction = Literal["lower", "higher"]
Space = Literal["genes", "pca50", "de"]


class Metric(abc.ABC):
    """A score for one (perturbation, cell line): predicted vs real cells, given control cells.

    ``space`` says where the evaluator computes it: ``genes`` (expression space), ``pca50``
    (50 PCs fitted on the real cells of the cell line) or ``de`` (differentially expressed genes).
    ``label``, when set, names its values in tables (e.g. ``de-overlap@20``).
    """

    name: str = ""
    label: str | None = None
    direction: ClassVar[Direction] = "lower"
    space: ClassVar[Space] = "genes"

    @abc.abstractmethod
    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        """pred [n,F], real [m,F], ctrl [c,F] in this metric's space -> one number."""


@dataclass
class LineCells:
    """Every held-out group of one cell line, in a fixed order, in a set metric's space."""

    preds: Sequence[np.ndarray]  # [n_i,F]
    reals: Sequence[np.ndarray]  # [m_i,F]
    ctrl: np.ndarray  # [c,F] the line's control cells
    groups: list[tuple[str, str]]  # (perturbation, cell line) of each


class SetMetric(Metric):
    """A metric that needs every held-out perturbation of a cell line at once (e.g. discrimination):
    ``compute_set(LineCells)`` returns one value per group; ``compute`` on one group is NaN."""

    def compute(self, pred: np.ndarray, real: np.ndarray, ctrl: np.ndarray) -> float:
        return float("nan")

    @abc.abstractmethod
    def compute_set(self, line: LineCells) -> np.ndarray:
        """Values [len(line.preds)] in the order of ``line.groups``."""
