"""The selector contract suite (``ptrag.core.testing``).

A selector is checked through ``make(ctx)``, a factory taking a :class:`BuildContext` (hidden
dim H, cell lines, ...) and returning a fresh selector::

    from ptrag.core.testing import SelectorContract

    class TestMySelector(SelectorContract):
        @pytest.fixture
        def make_selector(self):
            return lambda ctx: MySelector(MyParams(), ctx)

Each check raises AssertionError naming what broke; the output checks are the ones the engine
applies to every selector (``ptrag.core.components.guards``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..components.guards import ContractError, check_selection
from ..hookspecs import BuildContext
from ..interfaces import SelectionInput, Selector, SelectorOutput
from . import fixtures as fx

MakeSelector = Callable[[BuildContext], Selector]


def _built(make: MakeSelector) -> Selector:
    selector = make(fx.build_context())
    assert isinstance(selector, Selector), f"make(ctx) returned {type(selector).__name__}, not a Selector"
    return selector


def _label(selector: Selector) -> str:
    return getattr(selector, "name", "") or type(selector).__name__


def selection_input(selector: Selector, seed: int = 0, k: int = fx.K) -> SelectionInput:
    """A whole :class:`SelectionInput`, relations included when the selector declares it needs them."""
    batch = fx.cell_sets(seed, k=k)
    enc = fx.encoding(batch, seed)
    g = torch.Generator().manual_seed(seed + 1)
    ids = batch.neighbour_ids
    candidates = torch.randn(fx.B, k, fx.H, generator=g) * (ids >= 0).unsqueeze(-1)
    rel = fx.relations(batch, fx.tiny_database()) if selector.capabilities.needs_relations and k else None
    return SelectionInput(cell_states=enc.states, query=enc.query, candidates=candidates,
                          scores=batch.neighbour_scores, mask=ids >= 0, relations=rel, batch=batch)


def _run(selector: Selector, inputs: SelectionInput) -> SelectorOutput:
    out = selector(inputs)
    try:
        check_selection(out, fx.B, fx.S, inputs.candidates.shape[1], fx.H, inputs.mask, _label(selector))
    except ContractError as exc:
        raise AssertionError(str(exc)) from None
    return out


def check_output(make: MakeSelector) -> None:
    """Shapes, zero weight on padding, scalar auxiliary losses: in training and evaluation mode."""
    selector = _built(make)
    for training in (True, False):
        selector.train(training)
        _run(selector, selection_input(selector))


def check_no_candidates(make: MakeSelector) -> None:
    """K = 0 (nothing retrieved for these queries) is not an error."""
    selector = _built(make)
    selector.eval()
    _run(selector, selection_input(selector, k=0))


def check_gradients(make: MakeSelector) -> None:
    """A loss on what the selector hands on reaches its parameters, finite."""
    selector = _built(make)
    params = [p for p in selector.parameters() if p.requires_grad]
    if not params:
        return
    selector.train()
    out = _run(selector, selection_input(selector))
    parts = [t.float().pow(2).mean() for t in (out.context, out.weights) if t is not None]
    if out.evidence is not None:
        parts.append(out.evidence.response.float().pow(2).mean())
    parts += [v.float() for v in out.aux_losses.values()]
    if not parts:
        return
    sum(parts).backward()
    grads = [p.grad for p in params if p.grad is not None]
    assert grads, f"{_label(selector)}: no parameter receives a gradient from its output"
    assert all(bool(torch.isfinite(g).all()) for g in grads), f"{_label(selector)}: non-finite gradients"


def check_seeded_evaluation(make: MakeSelector) -> None:
    """In evaluation mode the same inputs and the same torch seed give the same output (a stochastic
    selector draws from torch's generator, which the engine seeds per group)."""
    selector = _built(make)
    selector.eval()
    inputs = selection_input(selector)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        with torch.no_grad():
            outs.append(_run(selector, inputs))
    for name in ("context", "weights"):
        a, b = getattr(outs[0], name), getattr(outs[1], name)
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b)), \
            f"{_label(selector)}: evaluation with the same seed gave a different {name}"


def check_selector(make: MakeSelector) -> None:
    """Every selector check."""
    check_output(make)
    check_no_candidates(make)
    check_gradients(make)
    check_seeded_evaluation(make)


class SelectorContract:
    """pytest-style base class: subclass it (named ``Test...``) and define a ``make_selector``
    fixture returning ``make(ctx) -> Selector``."""

    def test_output(self, make_selector: MakeSelector) -> None:
        check_output(make_selector)

    def test_no_candidates(self, make_selector: MakeSelector) -> None:
        check_no_candidates(make_selector)

    def test_gradients(self, make_selector: MakeSelector) -> None:
        check_gradients(make_selector)

    def test_seeded_evaluation(self, make_selector: MakeSelector) -> None:
        check_seeded_evaluation(make_selector)
