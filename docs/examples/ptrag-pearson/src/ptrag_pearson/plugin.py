"""The hook implementations ptrag discovers through the entry point in pyproject.toml."""

from __future__ import annotations

from pydantic import Field

from ptrag.core.hookspecs import BuildContext, ComponentParams, RetrieverSpec, hookimpl

from .retriever import PearsonRetriever


class PearsonParams(ComponentParams):
    """Parameters users may set: `--set retriever.k=16`. Unknown keys are rejected."""

    k: int = Field(32, ge=1, description="candidates per query")


def make_pearson(params: PearsonParams, context: BuildContext) -> PearsonRetriever:
    return PearsonRetriever()


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
