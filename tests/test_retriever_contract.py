"""The retriever contract (ptrag.core.testing) for every retriever the plugin manager reports,
built-ins and the third-party `fake-dot` alike; `none` returns no candidates by design."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ptrag.core import testing
from ptrag.core.components.manager import build_manager
from ptrag.core.hookspecs import BuildContext

# ablations that do not rank by similarity: no recall target, no nearest-first checks
NO_RECALL = {"random"}
EXPECTED = {"exact", "faiss", "hnsw", "random", "fake-dot"}


def _names() -> list[str]:
    """Parametrisation happens at collection, before fixtures: look the plugins up with the
    fake plugin's folder on the path (as the `fake_plugins` fixture does), then restore it."""
    site = str(Path(__file__).parent / "fixtures" / "site")
    sys.path.insert(0, site)
    importlib.invalidate_caches()
    try:
        names = build_manager().names("retriever")
    finally:
        sys.path.remove(site)
        sys.modules.pop("ptrag_fake_plugin", None)
    return [n for n in names if n != "none"]


CASES = [(name, {}) for name in _names()] + [
    ("faiss", {"index": "hnsw"}),
    ("faiss", {"index": "ivf", "nlist": 16, "nprobe": 8}),
]


def maker(name: str, params: dict):
    manager = build_manager()
    spec = manager.get("retriever", name)
    model = spec.params_model(**params)
    return lambda: spec.build(model, BuildContext(seed=0))


def test_every_retriever_is_covered(fake_plugins):
    reported = set(build_manager().names("retriever")) - {"none"}
    assert EXPECTED <= reported and reported == {name for name, _ in CASES}


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{p.get('index', '')}".rstrip("-") for n, p in CASES])
def test_retriever_contract(fake_plugins, tmp_path, name, params):
    make = maker(name, params)
    testing.check_retriever(make, tmp_path, min_recall=None if name in NO_RECALL else 0.95)


def test_none_returns_no_candidates(tmp_path):
    spec = build_manager(entry_points=False).get("retriever", "none")
    r = spec.build(spec.params_model(), BuildContext())
    r.build(np.ones((5, 4), np.float32))
    res = r.search(np.ones((3, 4), np.float32), 32)
    assert tuple(res.ids.shape) == (3, 0) and tuple(res.scores.shape) == (3, 0) and not res.mask.any()
    r.save(tmp_path / "r")
    assert len(type(r).load(tmp_path / "r")) == 5


class TestContractClass(testing.RetrieverContract):
    """The base class works for a third party: here with the built-in exact retriever."""

    @pytest.fixture
    def make_retriever(self):
        return maker("exact", {})


def test_contract_catches_a_broken_retriever(tmp_path):
    from ptrag.plugins.retrievers.exact import ExactRetriever

    class NoExclusion(ExactRetriever):
        def search(self, queries, k, exclude=None):
            return super().search(queries, k, None)

    class DotProduct(ExactRetriever):
        def build(self, keys, meta=None):
            self.keys = torch.as_tensor(np.asarray(keys, np.float32))

    with pytest.raises(AssertionError, match="excluded"):
        testing.check_exclusion(NoExclusion)
    with pytest.raises(AssertionError):
        testing.check_cosine_semantics(DotProduct)
