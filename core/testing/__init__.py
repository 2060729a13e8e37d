"""Contract suites for plugin components: what ptrag's own tests run on every built-in.

One suite per kind, each as plain check functions and as a pytest base class to subclass:
retrievers (``check_retriever``, ``RetrieverContract``), selectors (``check_selector``,
``SelectorContract``), generators (``check_generator``, ``GeneratorContract``) and metrics
(``check_metric``, ``MetricContract``). docs/writing-a-plugin.md shows them in a package's tests.
"""

from .generators import GeneratorContract, check_generator
from .metrics import MetricContract, check_metric
from .retrievers import (
                         MakeRetriever,
                         RetrieverContract,
                         check_cosine_semantics,
                         check_determinism,
                         check_duplicate_keys,
                         check_empty_database,
                         check_exclusion,
                         check_k_larger_than_database,
                         check_recall,
                         check_result,
                         check_retriever,
                         check_save_load,
                         check_zero_vectors,
                         clustered_keys,
                         reference_search,
)
from .selectors import SelectorContract, check_selector

__all__ = [
    "MakeRetriever", "clustered_keys", "reference_search", "check_result", "check_cosine_semantics",
    "check_exclusion", "check_k_larger_than_database", "check_empty_database", "check_duplicate_keys",
    "check_zero_vectors", "check_determinism", "check_save_load", "check_recall", "check_retriever",
    "RetrieverContract", "check_selector", "SelectorContract", "check_generator", "GeneratorContract",
    "check_metric", "MetricContract",
]
