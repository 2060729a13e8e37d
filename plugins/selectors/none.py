"""`none`: ignore retrieved candidates; the generator sees no context."""

from __future__ import annotations

from ptrag.core.hookspecs import BuildContext, ComponentParams, SelectorSpec, hookimpl
from ptrag.core.interfaces import SelectionInput, Selector, SelectorCapabilities, SelectorOutput
from ptrag.core.registry import builtin_specs


class NoSelection(Selector):
    capabilities = SelectorCapabilities(selects=False)

    def forward(self, inputs: SelectionInput) -> SelectorOutput:
        return SelectorOutput(context=None, weights=None)


def make_none(params: ComponentParams, ctx: BuildContext) -> NoSelection:
    return NoSelection()


@hookimpl
def ptrag_selectors() -> list[SelectorSpec]:
    return builtin_specs("selector", __name__)
