"""The plugin's tests: ptrag's retriever contract, plus what is special about Pearson."""

import numpy as np
import pytest

from ptrag.core.components.manager import build_manager
from ptrag.core.testing import RetrieverContract
from ptrag_pearson import PearsonRetriever


class TestPearsonContract(RetrieverContract):
    """Every check ptrag runs on its own retrievers (cosine semantics on our features,
    exclusion, K > N, empty database, duplicate keys, determinism, save/load)."""

    @pytest.fixture
    def make_retriever(self):
        return PearsonRetriever


def test_an_offset_does_not_change_the_ranking():
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(50, 16)).astype(np.float32)
    query = rng.normal(size=(1, 16)).astype(np.float32)
    retriever = PearsonRetriever()
    retriever.build(keys)
    shifted = PearsonRetriever()
    shifted.build(keys + 5.0)  # cosine would change; Pearson correlation does not
    assert retriever.search(query, 10).ids.tolist() == shifted.search(query + 5.0, 10).ids.tolist()


def test_ptrag_discovers_the_plugin_through_its_entry_point():
    manager = build_manager()
    assert "pearson" in manager.names("retriever")
    assert manager.provider("retriever", "pearson").package == "ptrag-pearson"
