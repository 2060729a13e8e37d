"""The plugin's tests: ptrag's contract suites, plus what is special about our components."""

import numpy as np
import pytest

from ptrag.core.components import build_manager
from ptrag.core.testing import MetricContract, RetrieverContract
from ptrag_pearson import PearsonRetriever, SpearmanDelta


class TestPearsonContract(RetrieverContract):
    """Every check ptrag runs on its own retrievers (cosine semantics on our features,
    exclusion, K > N, empty database, duplicate keys, determinism, save/load)."""

    @pytest.fixture
    def make_retriever(self):
        return PearsonRetriever


class TestSpearmanDeltaContract(MetricContract):
    """Every check ptrag runs on its own metrics (declarations, a perfect prediction scores at
    least as well as a wrong one, one value per group)."""

    @pytest.fixture
    def make_metric(self):
        return lambda context: SpearmanDelta()


def test_an_offset_does_not_change_the_ranking():
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(50, 16)).astype(np.float32)
    query = rng.normal(size=(1, 16)).astype(np.float32)
    retriever = PearsonRetriever()
    retriever.build(keys)
    shifted = PearsonRetriever()
    shifted.build(keys + 5.0)  # cosine would change; Pearson correlation does not
    assert retriever.search(query, 10).ids.tolist() == shifted.search(query + 5.0, 10).ids.tolist()


def test_spearman_delta_sees_the_ranking_not_the_size_of_a_change():
    ctrl = np.zeros((5, 4))
    real = np.tile([4.0, 1.0, 0.5, 0.0], (5, 1))
    assert SpearmanDelta().compute(real / 10, real, ctrl) == pytest.approx(1.0)  # same order, smaller
    assert SpearmanDelta().compute(real[:, ::-1], real, ctrl) == pytest.approx(-1.0)


def test_ptrag_discovers_the_plugin_through_its_entry_point():
    manager = build_manager()
    assert "pearson" in manager.names("retriever") and "spearman-delta" in manager.names("metric")
    assert manager.provider("retriever", "pearson").package == "ptrag-pearson"
    assert manager.provider("metric", "spearman-delta").package == "ptrag-pearson"
