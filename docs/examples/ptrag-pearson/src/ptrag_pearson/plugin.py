"""The hook implementations ptrag discovers through the entry point in pyproject.toml."""

from __future__ import annotations

from pydantic import Field

from ptrag.core.hookspecs import BuildContext, ComponentParams, MetricSpec, RetrieverSpec, hookimpl
from ptrag.core.interfaces import RetrieverCapabilities

from .metric import SpearmanDelta
from .retriever import PearsonRetriever


class PearsonParams(ComponentParams):
    """Parameters users may set: `--set retriever.k=16`. Unknown keys are rejected."""

    k: int = Field(32, ge=1, description="candidates per query")


def make_pearson(params: PearsonParams, context: BuildContext) -> PearsonRetriever:
    retriever = PearsonRetriever()
    retriever.capabilities = RetrieverCapabilities(k=params.k, exact=True)  # what the engine reads
    return retriever


def make_spearman_delta(params: ComponentParams, context: BuildContext) -> SpearmanDelta:
    return SpearmanDelta()


@hookimpl
def ptrag_retrievers() -> list[RetrieverSpec]:
    return [
        RetrieverSpec(
            name="pearson",
            factory=make_pearson,
            params_model=PearsonParams,
            summary="Pearson correlation of gene embeddings (example plugin)",
        )
    ]


@hookimpl
def ptrag_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="spearman-delta",
            factory=make_spearman_delta,
            summary="Spearman of predicted vs real mean change from control (example plugin)",
        )
    ]
