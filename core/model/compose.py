"""The PT-RAG composition: stage-1 neighbour ids -> candidate features -> selector -> generator.

Stage-1 retrieval is not differentiable and runs outside the module (precomputed per group,
:mod:`.neighbours`); a batch arrives with ``neighbour_ids``/``neighbour_scores``. This module turns
each candidate database entry into a feature vector [H] (its gene embedding and/or its observed
pseudobulk response plus its cell line, see ``model.context``), lets the selector weigh the
candidates per cell from the generator's cell states and query, and hands the selection to the
generator. Which of these steps run follows the components' declared capabilities only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..components.guards import check_generation, check_selection, who
from ..errors import PluginError
from ..interfaces import CellSetBatch, GenerationInput, Generator, SelectionInput, Selector, SelectorOutput
from .candidates import CandidateEncoder, RelationTable


def no_selection() -> SelectorOutput:
    return SelectorOutput(context=None, weights=None)


class PtragModel(nn.Module):
    """Selector + generator (+ candidate encoder) as one module; the engine trains this.

    Retrieval is used when the generator declares ``uses_retrieval``, the selector ``selects``
    and the database is not empty. With ``nonnegative`` the prediction is floored at 0 for every
    generator: log1p expression cannot be negative, so a valid cell is produced by construction.
    """

    def __init__(self, generator: Generator, selector: Selector, database: Any, *, hidden_dim: int,
                 context: str = "embedding", context_names: list[str] | None = None, nonnegative: bool = True):
        super().__init__()
        self.generator = generator
        self.selector = selector
        self.nonnegative = nonnegative
        names = list(context_names or sorted(set(database.contexts)))
        self.uses_retrieval = (generator.capabilities.uses_retrieval and selector.capabilities.selects
                               and len(database) > 0)
        self.candidates = CandidateEncoder(database, hidden_dim, context, names) if self.uses_retrieval else None
        self.relations = RelationTable(database, names) \
            if self.uses_retrieval and selector.capabilities.needs_relations else None

    @property
    def trainable(self) -> bool:
        return self.generator.capabilities.trainable

    @property
    def stochastic(self) -> bool:
        """Whether predictions draw random numbers at evaluation (seeded by the engine)."""
        return self.uses_retrieval and self.selector.capabilities.stochastic

    def forward(self, batch: CellSetBatch) -> tuple[torch.Tensor, SelectorOutput]:
        """Predicted cells [B,S,G] and the selector's output (weights, aux losses, stats)."""
        pred, selection = self._predict(batch)
        return (pred.clamp(min=0) if self.nonnegative else pred), selection

    def _predict(self, batch: CellSetBatch) -> tuple[torch.Tensor, SelectorOutput]:
        ids = batch.neighbour_ids
        if self.candidates is None or ids is None or ids.shape[-1] == 0:
            return self._generate(GenerationInput(batch)), no_selection()
        encoding = self.generator.encode(batch)
        if encoding is None:
            raise PluginError(f"generator {self.generator.name!r} declares uses_retrieval but its encode() returned "
                              "None; it must return a CellEncoding (cell states and query) for the selector")
        candidates = self.candidates(ids).to(encoding.states.dtype)
        mask = ids >= 0
        selection = self.selector(SelectionInput(
            cell_states=encoding.states, query=encoding.query, candidates=candidates,
            scores=batch.neighbour_scores, mask=mask,
            relations=self.relations(batch) if self.relations is not None else None, batch=batch))
        b, s, _ = batch.shape
        check_selection(selection, b, s, ids.shape[-1], candidates.shape[-1], mask, who(self.selector),
                        values=not self.training)
        return self._generate(GenerationInput(batch, encoding, selection)), selection

    def _generate(self, inputs: GenerationInput) -> torch.Tensor:
        pred = self.generator(inputs)
        check_generation(pred, inputs.batch.shape, who(self.generator))
        return pred
