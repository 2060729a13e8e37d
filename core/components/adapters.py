"""Components written to the contract of ptrag 0.1 keep working, with one warning each.

ptrag 0.1 passed arguments by flags: a selector got ``forward(cell_state, query, candidates,
scores, mask)`` (plus ``relations=`` when it set ``uses_relations``), a generator got
``forward(batch, context)`` (plus ``selection=`` with ``uses_selection``), a set metric
``compute_set(preds, reals, ctrl)`` (plus ``groups=`` with ``wants_groups``), and capabilities were
class attributes (``exact``, ``uses_gene_embeddings``, ``trainable``, ``uses_context``). Such a
component is recognised by its signature (more than the one input record) or by capabilities it
did not declare, and gets a ``forward`` (or ``compute_set``) that unpacks the record into the old
arguments. Its weights and state are untouched, so its checkpoints still load. Migration:
docs/writing-a-plugin.md, "Migrating from ptrag 0.1".
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

from ..interfaces import (
    CellEncoding,
    EvidenceWeights,
    GenerationInput,
    Generator,
    GeneratorCapabilities,
    Metric,
    Retriever,
    RetrieverCapabilities,
    SelectionInput,
    Selector,
    SelectorCapabilities,
    SelectorOutput,
    SetMetric,
)

GUIDE = "docs/writing-a-plugin.md, 'Migrating from ptrag 0.1'"
_warned: set[tuple[str, type]] = set()


class LegacyContractWarning(FutureWarning):
    """A plugin component written to ptrag 0.1's contract; it runs through an adapter."""


def _warn_once(kind: str, component: Any, label: str, what: str) -> None:
    key = (kind, type(component))
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(f"{label} uses ptrag 0.1's contract ({what}); it runs through an adapter. Update it: {GUIDE}",
                  LegacyContractWarning, stacklevel=3)


def _positional(method: Callable[..., Any]) -> list[str]:
    """Names of the parameters a bound method takes positionally."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in inspect.signature(method).parameters.values() if p.kind in kinds]


def _accepts(method: Callable[..., Any], name: str) -> bool:
    params = inspect.signature(method).parameters
    return name in params or any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())


def adapt(kind: str, component: Any, params: Any, label: str) -> Any:
    """The component under today's contract (itself when it already follows it)."""
    handler = {"retriever": _retriever, "selector": _selector, "generator": _generator,
               "metric": _metric}.get(kind)
    return handler(component, params, label) if handler else component


def _retriever(component: Retriever, params: Any, label: str) -> Retriever:
    if component.capabilities is not Retriever.capabilities:
        return component
    component.capabilities = RetrieverCapabilities(
        k=int(getattr(params, "k", 0) or 0), retrieves=True, exact=bool(getattr(component, "exact", True)),
        reads_gene_embeddings=bool(getattr(component, "uses_gene_embeddings", True)))
    _warn_once("retriever", component, label, "capabilities as class attributes, k from its parameters")
    return component


def _as_evidence(output: SelectorOutput) -> SelectorOutput:
    """0.1's evidence was a dict {"response": [B,K], "deviation": [B,K]}."""
    if isinstance(output.evidence, dict):
        found = output.evidence
        output.evidence = EvidenceWeights(found["response"], found.get("deviation")) if found else None
    return output


def _selector(component: Selector, params: Any, label: str) -> Selector:
    if len(_positional(component.forward)) <= 1:
        return component
    original = component.forward
    relations = bool(getattr(component, "uses_relations", False))
    component.capabilities = SelectorCapabilities(needs_relations=relations)

    def forward(inputs: SelectionInput) -> SelectorOutput:
        extra = {"relations": inputs.relations} if relations else {}
        return _as_evidence(original(inputs.cell_states, inputs.query, inputs.candidates, inputs.scores,
                                     inputs.mask, **extra))

    component.forward = forward
    _warn_once("selector", component, label, "forward(cell_state, query, candidates, scores, mask)")
    return component


def _generator(component: Generator, params: Any, label: str) -> Generator:
    if len(_positional(component.forward)) <= 1:
        return component
    original, encode = component.forward, component.encode
    selection = bool(getattr(component, "uses_selection", False)) and _accepts(original, "selection")
    encoded = _accepts(original, "encoded")
    component.capabilities = GeneratorCapabilities(
        trainable=bool(getattr(component, "trainable", True)),
        uses_retrieval=bool(getattr(component, "uses_context", False)),
        reads_gene_embeddings=bool(getattr(component, "uses_gene_embeddings", True)))

    def encode_record(batch: Any) -> CellEncoding | None:
        found = encode(batch)
        return CellEncoding(*found) if isinstance(found, tuple) else found

    def forward(inputs: GenerationInput) -> Any:
        extra: dict[str, Any] = {}
        if encoded:
            extra["encoded"] = None if inputs.encoding is None else (inputs.encoding.states, inputs.encoding.query)
        if selection:
            extra["selection"] = _legacy_selection(inputs.selection)
        return original(inputs.batch, inputs.context, **extra)

    component.encode, component.forward = encode_record, forward
    _warn_once("generator", component, label, "forward(batch, context)")
    return component


def _legacy_selection(output: SelectorOutput | None) -> SelectorOutput | None:
    """A selection as 0.1's generators read it: evidence as a dict."""
    if output is None or not isinstance(output.evidence, EvidenceWeights):
        return output
    evidence = {"response": output.evidence.response}
    if output.evidence.deviation is not None:
        evidence["deviation"] = output.evidence.deviation
    return SelectorOutput(output.context, output.weights, output.aux_losses, output.stats, evidence)


def _metric(component: Metric, params: Any, label: str) -> Metric:
    if not isinstance(component, SetMetric) or len(_positional(component.compute_set)) <= 1:
        return component
    original = component.compute_set
    groups = bool(getattr(component, "wants_groups", False))

    def compute_set(line: Any) -> Any:
        extra = {"groups": line.groups} if groups else {}
        return original(line.preds, line.reals, line.ctrl, **extra)

    component.compute_set = compute_set
    _warn_once("metric", component, label, "compute_set(preds, reals, ctrl)")
    return component
