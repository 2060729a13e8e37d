"""ptrag-pearson: an example third-party ptrag plugin (see ptrag's docs/writing-a-plugin.md)."""

from .metric import SpearmanDelta
from .retriever import PearsonRetriever

__all__ = ["PearsonRetriever", "SpearmanDelta"]
