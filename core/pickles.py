"""Pickles read as data, never as code: an unpickler that rebuilds only an allow-list of types.

``pickle.load`` calls whatever function a file names, so a crafted ``.pkl`` runs code the moment
it is opened. Every pickle ptrag reads (gene-embedding tables) goes through :func:`load_data`,
whose :class:`DataUnpickler` rebuilds the plain containers pickle itself knows (dict, list, tuple,
str, numbers) plus numpy arrays and scalars and the few pandas classes a DataFrame or Series of
numbers is made of; any other global stops the read before it is called (:class:`RefusedGlobal`).
Torch checkpoints are read with ``torch.load(weights_only=True)``, which does the same for tensors;
:data:`NUMPY_ARRAY` lists the numpy globals both allow.
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
from typing import Any, BinaryIO

#: numpy's own functions and types for rebuilding an array or a scalar (module as pickled, name)
NUMPY_ARRAY = frozenset({
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
})
#: what a pandas DataFrame or Series with a plain index pickles as (pandas 2)
PANDAS_FRAME = frozenset({
    ("pandas.core.frame", "DataFrame"), ("pandas.core.series", "Series"),
    ("pandas.core.indexes.base", "Index"), ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.range", "RangeIndex"), ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.internals.managers", "SingleBlockManager"), ("pandas._libs.internals", "_unpickle_block"),
    ("builtins", "slice"), ("__builtin__", "slice"),
})
#: pickle protocol 2 writes bytes as ``_codecs.encode(text, 'latin1')``
CODECS = frozenset({("_codecs", "encode")})
ALLOWED = NUMPY_ARRAY | PANDAS_FRAME | CODECS


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a function or class outside the allow-list; nothing of it was called."""

    def __init__(self, name: str):
        super().__init__(f"refused global {name}")
        self.name = name


def _resolve(module: str, name: str) -> Any:
    """The allowed object, from numpy's current module when the pickle names the old one (or back)."""
    renamed = (module.replace("numpy.core.", "numpy._core."), module.replace("numpy._core.", "numpy.core."))
    for candidate in dict.fromkeys((module, *renamed)):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise RefusedGlobal(f"{module}.{name}")


class DataUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that rebuilds only :data:`ALLOWED` globals (no persistent ids either)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise RefusedGlobal(f"{module}.{name}")
        if module == "__builtin__":  # Python 2's name, in protocols 0-2
            module = "builtins"
        return _resolve(module, name)


def load_data(fh: BinaryIO) -> Any:
    """The object in an open pickle, rebuilt from allowed types only (else :class:`RefusedGlobal`)."""
    return DataUnpickler(fh).load()


def loads_data(data: bytes) -> Any:
    return load_data(io.BytesIO(data))


def torch_safe_globals() -> list[Any]:
    """numpy's array and scalar globals, for ``torch.serialization.safe_globals`` (checkpoints of
    ptrag hold numeric numpy arrays beside their tensors): the functions, and numeric dtypes' classes."""
    import numpy as np

    out: list[Any] = []
    for module, name in sorted(NUMPY_ARRAY):
        if module.startswith("numpy.core."):
            continue  # numpy 2's shim: torch matches the object's own module name
        try:
            out.append(_resolve(module, name))
        except RefusedGlobal:
            continue
    kinds = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
             np.float16, np.float32, np.float64)
    return out + [type(np.dtype(kind)) for kind in kinds]


_TORCH_GLOBAL = re.compile(r"(?:GLOBAL|Trying to call reduce for|got <class ')\s*'?([\w.]+)")
_TORCH_WORDS = re.compile(r"WeightsUnpickler error:\s*(.+)")


def torch_refusal(exc: BaseException) -> tuple[str | None, str] | None:
    """Why ``torch.load(weights_only=True)`` refused a file: (the function or class it names, or
    None, and a few words), or None when it failed for another reason (no such file, not a zip)."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return None
    found = _TORCH_GLOBAL.search(text)
    if found:
        return found.group(1), f"it names {found.group(1)}"
    words = _TORCH_WORDS.search(text)
    return None, words.group(1).strip() if words else "a Python object"
