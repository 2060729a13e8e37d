"""`none`: ignore retrieved candidates; the generator sees no context."""

from __future__ import annotations

import torch

from ptrag.core.hookspecs import BuildContext, ComponentParams, SelectorSpec, hookimpl
from ptrag.core.interfaces import Selector, SelectorOutput


class NoSelection(Selector):
    name = "none"

    def forward(self, cell_state: torch.Tensor, query: torch.Tensor, candidates: torch.Tensor,
                scores: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> SelectorOutput:
        return SelectorOutput(context=None, weights=None)


@hookimpl
def ptrag_selectors() -> list[SelectorSpec]:
    return [SelectorSpec("none", lambda params, ctx: NoSelection(), ComponentParams,
                         "No selection: retrieved candidates are ignored")]
