"""The generator contract suite (``ptrag.core.testing``).

A generator is checked through ``make(ctx)``, a factory taking a :class:`BuildContext` and
returning a fresh generator; the suite calls ``fit`` on a small retrieval database first::

    from ptrag.core.testing import GeneratorContract

    class TestMyGenerator(GeneratorContract):
        @pytest.fixture
        def make_generator(self):
            return lambda ctx: MyGenerator(MyParams(), ctx)
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..components.guards import ContractError, check_combined, check_generation
from ..errors import ConfigError
from ..hookspecs import BuildContext
from ..interfaces import CellEncoding, GenerationInput, Generator
from ..training.checkpoints import load_checkpoint, save_checkpoint
from . import fixtures as fx

MakeGenerator = Callable[[BuildContext], Generator]


def _fitted(make: MakeGenerator, seed: int = 0) -> Generator:
    torch.manual_seed(seed)  # equal initial weights for equal seeds
    generator = make(fx.build_context(seed))
    assert isinstance(generator, Generator), f"make(ctx) returned {type(generator).__name__}, not a Generator"
    generator.fit(fx.tiny_database())
    if generator.capabilities.members and not _of_groups(generator):  # the engine hands members over
        generator.attach_members(fx.members(generator.capabilities.members))
    return generator


def _of_groups(generator: Generator) -> bool:
    """An ensemble that combines whole groups (its checks call ``combine``, not ``forward``)."""
    return bool(generator.capabilities.members) and generator.capabilities.combines == "groups"


def _combine(generator: Generator, seed: int = 0, n: int = 7) -> np.ndarray:
    view = fx.member_cells(generator.capabilities.members, seed, n)
    try:
        return check_combined(generator.combine(view), fx.G, _label(generator), f"{view.pert} in {view.context}")
    except ContractError as exc:
        raise AssertionError(str(exc)) from None


def _label(generator: Generator) -> str:
    return getattr(generator, "name", "") or type(generator).__name__


def generation_inputs(generator: Generator, seed: int = 0) -> list[GenerationInput]:
    """The inputs the engine may pass: without a selection always; with an encoding and a
    selection when the generator uses retrieval."""
    batch = fx.cell_sets(seed)
    out = [GenerationInput(batch)]
    if generator.capabilities.uses_retrieval:
        encoding = generator.encode(batch)
        assert isinstance(encoding, CellEncoding), \
            f"{_label(generator)}: declares uses_retrieval but encode() returned {type(encoding).__name__}"
        assert tuple(encoding.states.shape) == (fx.B, fx.S, fx.H) and tuple(encoding.query.shape) == (fx.B, fx.H), \
            f"{_label(generator)}: encode() shapes {tuple(encoding.states.shape)}, {tuple(encoding.query.shape)}"
        out.append(GenerationInput(batch, encoding, fx.selection(batch, seed)))
    return out


def _predict(generator: Generator, inputs: GenerationInput) -> torch.Tensor:
    pred = generator(inputs)
    try:
        check_generation(pred, inputs.batch.shape, _label(generator), finite=True)
    except ContractError as exc:
        raise AssertionError(str(exc)) from None
    return pred


def check_output(make: MakeGenerator) -> None:
    """Predicted cells [B,S,G], finite, with and without a selection, in training and evaluation."""
    generator = _fitted(make)
    if _of_groups(generator):
        assert not generator.capabilities.trainable, \
            f"{_label(generator)}: an ensemble of whole groups is fitted (calibrate_groups), not trained"
        for training in (True, False):
            generator.train(training)
            _combine(generator)
        return
    for training in (True, False):
        generator.train(training)
        for inputs in generation_inputs(generator):
            _predict(generator, inputs)


def check_one_cell(make: MakeGenerator) -> None:
    """A set of one cell (a held-out group with one cell) works."""
    generator = _fitted(make)
    generator.eval()
    if _of_groups(generator):
        _combine(generator, seed=3, n=1)
        return
    batch = fx.cell_sets(3, b=1, s=1)
    with torch.no_grad():
        _predict(generator, GenerationInput(batch))


def check_gradients(make: MakeGenerator) -> None:
    """A trainable generator's parameters get finite gradients from a loss on its cells (or on its
    encoding, which a selector consumes: some generators learn only through what they select)."""
    generator = _fitted(make)
    if not generator.capabilities.trainable:
        return
    generator.train()
    generator.zero_grad()
    losses = []
    for inputs in generation_inputs(generator):
        loss = (_predict(generator, inputs) - inputs.batch.target).pow(2).mean()
        if inputs.encoding is not None:
            loss = loss + inputs.encoding.states.pow(2).mean() + inputs.encoding.query.pow(2).mean()
        if loss.requires_grad:
            losses.append(loss)
    assert losses, f"{_label(generator)}: declares trainable, but nothing it returns depends on a parameter"
    sum(losses).backward()
    grads = [p.grad for p in generator.parameters() if p.grad is not None]
    assert grads, f"{_label(generator)}: trainable, but no parameter receives a gradient"
    assert all(bool(torch.isfinite(g).all()) for g in grads), f"{_label(generator)}: non-finite gradients"


def _through_a_checkpoint(generator: Generator) -> dict:
    """The generator's state as ``checkpoint.pt`` stores it and reads it back (weights only: a
    state that holds other Python objects would make checkpoints ptrag refuses to load)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pt"
        save_checkpoint(path, {"model": generator.state_dict()})
        try:
            return load_checkpoint(path)["model"]
        except ConfigError as exc:
            raise AssertionError(f"{_label(generator)}: its state_dict does not load from a checkpoint: hold "
                                 f"tensors (and plain containers of them) only ({exc})") from None


def check_state_round_trip(make: MakeGenerator) -> None:
    """A fresh generator loading another's state (a checkpoint) predicts the same cells."""
    a, b = _fitted(make, seed=0), _fitted(make, seed=1)
    b.load_state_dict(_through_a_checkpoint(a))
    a.eval(), b.eval()
    if _of_groups(a):
        assert np.allclose(_combine(a), _combine(b), atol=1e-5), f"{_label(a)}: the loaded state combines otherwise"
        return
    for inputs in generation_inputs(a):
        torch.manual_seed(5)
        with torch.no_grad():
            pa = _predict(a, inputs)
        torch.manual_seed(5)
        with torch.no_grad():
            pb = _predict(b, inputs)
        assert torch.allclose(pa, pb, atol=1e-5), f"{_label(a)}: the loaded state predicts other cells"


def check_calibration(make: MakeGenerator) -> None:
    """A generator that ``calibrates`` reports what it fitted, still predicts valid cells, and its
    checkpoint holds the fit (a fresh generator loading its state predicts the same cells)."""
    a = _fitted(make)
    if not a.capabilities.calibrates:
        return
    a.eval()
    if _of_groups(a):
        _check_group_calibration(make, a)
        return
    with torch.no_grad():
        fitted = a.calibrate([fx.cell_sets(seed) for seed in (1, 2)])
        after = _predict(a, GenerationInput(fx.cell_sets(7)))
    assert isinstance(fitted, dict) and fitted, f"{_label(a)}: calibrate() must return what it fitted, got {fitted!r}"
    b = _fitted(make, seed=1)
    b.load_state_dict(a.state_dict())
    b.eval()
    with torch.no_grad():
        again = _predict(b, GenerationInput(fx.cell_sets(7)))
    assert torch.allclose(after, again, atol=1e-5), f"{_label(a)}: the calibration is not in its state_dict"


def _check_group_calibration(make: MakeGenerator, a: Generator) -> None:
    before = _combine(a, seed=7)
    fitted = a.calibrate_groups([fx.member_cells(a.capabilities.members, seed) for seed in (1, 2)])
    assert isinstance(fitted, dict) and fitted, \
        f"{_label(a)}: calibrate_groups() must return what it fitted, got {fitted!r}"
    after = _combine(a, seed=7)
    b = _fitted(make, seed=1)
    b.load_state_dict(_through_a_checkpoint(a))
    assert np.allclose(after, _combine(b, seed=7), atol=1e-5), f"{_label(a)}: the calibration is not in its state_dict"
    assert before.shape == after.shape, f"{_label(a)}: calibration changed how many cells a group gets"


def check_generator(make: MakeGenerator) -> None:
    """Every generator check."""
    check_output(make)
    check_one_cell(make)
    check_gradients(make)
    check_state_round_trip(make)
    check_calibration(make)


class GeneratorContract:
    """pytest-style base class: subclass it (named ``Test...``) and define a ``make_generator``
    fixture returning ``make(ctx) -> Generator``."""

    def test_output(self, make_generator: MakeGenerator) -> None:
        check_output(make_generator)

    def test_one_cell(self, make_generator: MakeGenerator) -> None:
        check_one_cell(make_generator)

    def test_gradients(self, make_generator: MakeGenerator) -> None:
        check_gradients(make_generator)

    def test_state_round_trip(self, make_generator: MakeGenerator) -> None:
        check_state_round_trip(make_generator)

    def test_calibration(self, make_generator: MakeGenerator) -> None:
        check_calibration(make_generator)
