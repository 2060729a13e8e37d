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
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .guards import _fail, who


def frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (the array itself stays writable for ptrag)."""
    view = np.asarray(array).view()
    view.flags.writeable = False
    return view


_FIELDS: dict[type, tuple[str, ...]] = {}  # a record class's field names (dataclasses.fields is slow)
_LEAVES = (torch.Tensor, np.ndarray)
_PLAIN = (str, int, float, bool, list, tuple, type(None))


def _named(name: str, value: Any, depth: int, out: list[tuple[str, str, Any]]) -> None:
    """``(record name, field, tensor or array)`` in a record (dataclass fields, dict values),
    ``depth`` records deep (a selection's inputs hold the batch, which holds the cells), into
    ``out``; names are joined only for a message (this runs three times per training step)."""
    cls = type(value)
    if cls in _FIELDS:
        for field in _FIELDS[cls]:
            item = getattr(value, field)
            if isinstance(item, _LEAVES):
                out.append((name, field, item))
            elif depth > 1 and not isinstance(item, _PLAIN):
                _named(f"{name}.{field}", item, depth - 1, out)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, _LEAVES):
                out.append((name, f"[{key!r}]", item))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(value))
        _named(name, value, depth, out)


def _state(value: torch.Tensor | np.ndarray) -> Any:
    if isinstance(value, torch.Tensor):
        return value._version
    if value.dtype.hasobject:
        return None  # not numbers: nothing a plugin computes with
    return hashlib.blake2b(np.ascontiguousarray(value).view(np.uint8).reshape(-1), digest_size=16).digest()


class Untouched:
    """The state of a call's inputs (a tensor's version, an array's hash); :meth:`check` after the call."""

    def __init__(self, inputs: Iterable[tuple[str, Any]]):
        found: list[tuple[str, str, Any]] = []
        for name, value in inputs:
            if isinstance(value, _LEAVES):
                found.append((name, "", value))
            else:
                _named(name, value, 2, found)
        self.watched = [(name, field, item, _state(item)) for name, field, item in found]

    def check(self, component: Any, what: str) -> None:
        for name, field, item, state in self.watched:
            if _state(item) != state:
                label = name if not field else f"{name}{field}" if field.startswith("[") else f"{name}.{field}"
                fix = "x = x + 1, not x += 1; x.clone() before an in-place call" if isinstance(item, torch.Tensor) \
                    else "arr = arr / n, not arr /= n; arr.copy() before an in-place call"
                raise _fail(who(component), f"{what} changed its input {label} in place; inputs are read-only: "
                                            f"compute a new one ({fix})")
