"""A plugin reads its inputs and never changes them.

Arrays reach one metric after another and end in predictions.h5ad; the database's arrays are the
candidates' features; tensors reach the selector and then the generator, and the batch's target
is the loss's. So a metric that edits ``pred`` in place would change the next metric's value and
the written cells, a retriever that normalises its keys in place the candidates, a generator that
edits ``batch.target`` the loss. Cheap protections, no copies:

- a metric's arrays are read-only views (:func:`frozen`), so a write fails at once in numpy and
  is reported as that metric's failure;
- a call's tensors keep their version counters (``tensor._version``, which every in-place
  operation increments): read before and after the call (:class:`Untouched`), a few
  microseconds per call and no GPU sync;
- the arrays of a call made once per run or epoch (a retriever's ``build``, a generator's
  ``fit``) are hashed before and after it; read-only views there would make torch warn about
  every ``torch.from_numpy`` of them in plugins written before this rule.

A change stops the run in one line naming the plugin and the input it changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from .guards import _fail, who


def frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (the array itself stays writable for ptrag)."""
    view = np.asarray(array).view()
    view.flags.writeable = False
    return view


def _named(name: str, value: Any, depth: int) -> Iterator[tuple[str, torch.Tensor | np.ndarray]]:
    """``(dotted name, tensor or array)`` in a record (dataclass fields, dict values), ``depth``
    records deep (a selection's inputs hold the batch, which holds the cells)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        yield name, value
    elif depth and dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _named(f"{name}.{f.name}", getattr(value, f.name), depth - 1)
    elif depth and isinstance(value, dict):
        for key, item in value.items():
            yield from _named(f"{name}[{key!r}]", item, depth - 1)


def _state(value: torch.Tensor | np.ndarray) -> Any:
    if isinstance(value, torch.Tensor):
        return value._version
    if value.dtype.hasobject:
        return None  # not numbers: nothing a plugin computes with
    return hashlib.blake2b(np.ascontiguousarray(value).view(np.uint8).reshape(-1), digest_size=16).digest()


class Untouched:
    """The state of a call's inputs (a tensor's version, an array's hash); :meth:`check` after the call."""

    def __init__(self, inputs: Iterable[tuple[str, Any]]):
        seen: dict[int, tuple[str, Any, Any]] = {}
        for name, value in inputs:
            for label, item in _named(name, value, 2):
                if id(item) not in seen:
                    seen[id(item)] = (label, item, _state(item))
        self.watched = list(seen.values())

    def check(self, component: Any, what: str) -> None:
        for label, item, state in self.watched:
            if _state(item) != state:
                fix = "x = x + 1, not x += 1; x.clone() before an in-place call" if isinstance(item, torch.Tensor) \
                    else "arr = arr / n, not arr /= n; arr.copy() before an in-place call"
                raise _fail(who(component), f"{what} changed its input {label} in place; inputs are read-only: "
                                            f"compute a new one ({fix})")
