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

from ..components.guards import calling, check_encoding, check_generation, check_selection, who
from ..components.readonly import Untouched
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
        self.nonnegative, self.hidden_dim = nonnegative, hidden_dim
        self._stepped = False  # a training forward has run: NaN from now on may be a divergence
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
        if self.training and not self._stepped:
            self._stepped = True
        pred, selection = self._predict(batch)
        return (pred.clamp(min=0) if self.nonnegative else pred), selection

    def _predict(self, batch: CellSetBatch) -> tuple[torch.Tensor, SelectorOutput]:
        ids = batch.neighbour_ids
        if self.candidates is None or ids is None or ids.shape[-1] == 0:
            return self._generate(GenerationInput(batch)), no_selection()
        untouched = Untouched([("batch", batch)])
        with calling(self.generator, "encode"):
            encoding = self.generator.encode(batch)
        untouched.check(self.generator, "encode")
        b, s, _ = batch.shape
        check_encoding(encoding, b, s, self.hidden_dim, who(self.generator))
        candidates = self.candidates(ids).to(encoding.states.dtype)
        mask = ids >= 0
        inputs = SelectionInput(cell_states=encoding.states, query=encoding.query, candidates=candidates,
                                scores=batch.neighbour_scores, mask=mask,
                                relations=self.relations(batch) if self.relations is not None else None, batch=batch)
        untouched = Untouched([("inputs", inputs)])
        with calling(self.selector, "forward"):
            selection = self.selector(inputs)
        untouched.check(self.selector, "forward")
        check_selection(selection, b, s, ids.shape[-1], candidates.shape[-1], mask, who(self.selector),
                        values=not self.training, finite=self._check_finite)
        return self._generate(GenerationInput(batch, encoding, selection)), selection

    def _generate(self, inputs: GenerationInput) -> torch.Tensor:
        untouched = Untouched([("inputs.batch", inputs.batch), ("inputs.selection", inputs.selection)])
        with calling(self.generator, "forward"):
            pred = self.generator(inputs)
        untouched.check(self.generator, "forward")
        batch = inputs.batch
        check_generation(pred, batch.shape, who(self.generator), finite=self._check_finite,
                         groups=[f"{p} in {c}" for p, c in zip(batch.perts, batch.contexts, strict=False)])
        return pred

    @property
    def _check_finite(self) -> bool:
        """In evaluation, NaN from a model that has not trained (a baseline, or a trainable one
        before its first step) is its plugin's bug; after training steps it may be a divergence,
        which the trainer and the evaluate stage report with what to change."""
        return not self.training and not (self.trainable and self._stepped)
