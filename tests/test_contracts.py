"""The contract suites of ptrag.core.testing on every built-in selector, generator and metric
(retrievers: tests/test_retriever_contract.py), each with its default parameters and with the
parameters a preset gives it where those change what it returns."""

from __future__ import annotations

import pytest

from ptrag.core import testing
from ptrag.core.components.manager import build_manager

MANAGER = build_manager(entry_points=False)
VARIANTS = {  # parameters that change what a component hands on: each gets its own run of the suite
    ("selector", "gumbel"): [{"sample_at_eval": True, "standardize_logits": True}],
    ("generator", "set_transformer"): [{"pert_encoding": "onehot", "context_mode": "replace"}],
    ("generator", "evidence"): [{"correction": True}],
}


def cases(kind: str) -> list[tuple[str, dict]]:
    names = [n for n in MANAGER.names(kind) if (kind, n) not in MANAGER.absent]
    return [(n, {}) for n in names] + [(n, p) for n in names for p in VARIANTS.get((kind, n), [])]


def maker(kind: str, name: str, params: dict):
    spec = MANAGER.get(kind, name)
    model = spec.params_model(**params)
    return lambda ctx: spec.build(model, ctx)


def ids(cases: list[tuple[str, dict]]) -> list[str]:
    return [name + "".join(f"-{k}={v}" for k, v in params.items()) for name, params in cases]


@pytest.mark.parametrize("name,params", cases("selector"), ids=ids(cases("selector")))
def test_selector_contract(name, params, one_thread):
    testing.check_selector(maker("selector", name, params))


@pytest.mark.parametrize("name,params", cases("generator"), ids=ids(cases("generator")))
def test_generator_contract(name, params, one_thread):
    testing.check_generator(maker("generator", name, params))


@pytest.mark.parametrize("name,params", cases("metric"), ids=ids(cases("metric")))
def test_metric_contract(name, params):
    testing.check_metric(maker("metric", name, params))


def test_the_suites_catch_a_broken_component():
    from ptrag.core.interfaces import Selector, SelectorOutput

    class WeighsPadding(Selector):
        def forward(self, inputs):
            b, s = inputs.cell_states.shape[:2]
            k = inputs.candidates.shape[1]
            import torch
            return SelectorOutput(context=None, weights=torch.ones(b, s, k))

    with pytest.raises(AssertionError, match="padding candidate"):
        testing.check_selector(lambda ctx: WeighsPadding())


def test_the_generator_suite_catches_a_calibration_kept_outside_the_checkpoint():
    import torch

    from ptrag.core.interfaces import Generator, GeneratorCapabilities

    class ForgetsItsFit(Generator):
        capabilities = GeneratorCapabilities(trainable=False, uses_retrieval=False, calibrates=True)

        def __init__(self):
            super().__init__()
            self.shift = 0.0  # a plain attribute: state_dict() does not save it

        def calibrate(self, batches):
            self.shift = float(torch.cat([b.target - b.ctrl for b in batches]).mean())
            return {"shift": self.shift}

        def forward(self, inputs):
            return inputs.batch.ctrl + self.shift

    with pytest.raises(AssertionError, match="calibration is not in its state_dict"):
        testing.check_generator(lambda ctx: ForgetsItsFit())
