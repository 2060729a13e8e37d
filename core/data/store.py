"""Where a screen's expression matrix lives: in memory (float32 or float16) or in its file (backed).

Callers index rows, ``data.X[rows]``, and get float32 whatever the storage, so batches, databases
and metrics do not know which store they read. float32 in memory is a plain numpy array;
:class:`HalfStore` holds float16 (half the bytes); :class:`BackedStore` leaves the matrix in the
.h5ad and reads only the rows asked for, in file order, holding the control cells (read by every
cell set) in memory.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import h5py
import numpy as np

from ..errors import DataError

try:  # anndata >= 0.11
    from anndata.io import sparse_dataset
except ImportError:  # pragma: no cover - older anndata
    from anndata.experimental import sparse_dataset


def row_positions(key: Any, n: int) -> tuple[np.ndarray, bool]:
    """Row positions named by ``key`` (int, slice, int or bool array) and whether it named one row."""
    if isinstance(key, tuple):
        raise TypeError("expression stores select rows only (data.X[rows]); select columns on the result")
    if isinstance(key, (int, np.integer)):
        if not -n <= key < n:
            raise IndexError(f"row {key} is out of range for {n} cells")
        return np.array([int(key) % n]), True
    if isinstance(key, slice):
        return np.arange(n)[key], False
    idx = np.asarray(key)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"boolean row mask of shape {idx.shape} for {n} cells")
        return np.flatnonzero(idx), False
    if idx.size == 0:
        return np.empty(0, dtype=np.int64), False
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"rows must be an int, a slice or a 1-D int/bool array, not {idx.dtype}{list(idx.shape)}")
    if idx.min() < -n or idx.max() >= n:
        raise IndexError(f"row index out of range for {n} cells")
    return np.where(idx < 0, idx + n, idx).astype(np.int64, copy=False), False


class HalfStore:
    """The matrix in memory as float16: half the bytes of float32, rows returned as float32.

    float16 keeps 11 significant bits: a log1p value x is stored within 2^-11 * x (0.004 at 10).
    """

    def __init__(self, array: np.ndarray):
        self.array = array

    shape = property(lambda self: self.array.shape)
    ndim = 2
    dtype = np.dtype(np.float32)  # what reads return
    nbytes = property(lambda self: self.array.nbytes)  # bytes held in memory

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            raise TypeError("expression stores select rows only (data.X[rows]); select columns on the result")
        return self.array[key].astype(np.float32)


class BackedStore:
    """The matrix stays in the .h5ad; a read fetches only the rows it names, sorted, once each.

    ``rows[i]`` is the file row of kept cell i. Rows in ``held`` (the control cells) are kept in
    memory, filled while the loader streams the file. An uncompressed contiguous dense matrix (how
    anndata writes dense ``obsm``) is read with ``preadv`` at its byte offset, a few microseconds a
    row; chunked or compressed datasets go through h5py, CSR matrices through anndata.
    ``rows_read`` counts rows fetched from the file (tests and benchmarks use it).
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, path: str, name: str, rows: np.ndarray, n_cols: int, *, sparse: bool,
                 held: np.ndarray, held_dtype: str | np.dtype = np.float32):
        self.path, self.name, self.sparse = str(path), name, sparse
        self.rows = np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows), int(n_cols))
        self.held_slot = np.full(len(self.rows), -1, dtype=np.int64)
        self.held_slot[held] = np.arange(len(held))
        self.held = np.empty((len(held), self.shape[1]), dtype=held_dtype)
        self.rows_read = 0
        self._pid: int | None = None
        self._file = self._elem = self._offset = None
        self._fd = -1
        self._closer: weakref.finalize | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held in memory (control rows and the row maps), not the matrix on disk."""
        return self.held.nbytes + self.held_slot.nbytes + self.rows.nbytes

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        pos, single = row_positions(key, self.shape[0])
        out = np.empty((len(pos), self.shape[1]), dtype=np.float32)
        slot = self.held_slot[pos]
        in_memory = slot >= 0
        out[in_memory] = self.held[slot[in_memory]]
        if not in_memory.all():
            uniq, inverse = np.unique(self.rows[pos[~in_memory]], return_inverse=True)
            out[~in_memory] = self._read(uniq)[inverse]
            self.rows_read += len(uniq)
        return out[0] if single else out

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._pid = self._file = self._elem = self._offset = self._closer = None

    # ------------------------------------------------------------------ reading

    def _open(self) -> None:
        """Open the file (again after a fork: h5py handles do not survive one)."""
        if self._pid == os.getpid():
            return
        if self._closer is not None:  # this process's copy of the parent's descriptor
            self._closer()
        self._file = h5py.File(self.path, "r")
        elem = self._file[self.name]
        self._elem = sparse_dataset(elem) if self.sparse else elem
        offset = None if self.sparse else elem.id.get_offset()
        self._offset = self._closer = None
        if offset is not None and elem.chunks is None and elem.compression is None and hasattr(os, "preadv"):
            self._offset, self._row_bytes = offset, elem.dtype.itemsize * self.shape[1]
            self._fd = os.open(self.path, os.O_RDONLY)
            self._closer = weakref.finalize(self, os.close, self._fd)
        self._pid = os.getpid()

    def _read(self, file_rows: np.ndarray) -> np.ndarray:
        """Rows ``file_rows`` (sorted, unique) of the file's matrix; a failure names the file."""
        try:
            self._open()
            if self._offset is not None:
                return self._pread(file_rows)
            if self.sparse:
                return self._elem[file_rows].toarray()
            return self._elem[file_rows]
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise DataError(f"{self.path}: cannot read rows of {self.name} ({type(exc).__name__}: {reason}); the "
                            "file changed, moved or was damaged while the run read it") from None

    def _pread(self, file_rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(file_rows), self.shape[1]), dtype=self._elem.dtype)
        buf = memoryview(out).cast("B")
        step = self._row_bytes
        breaks = np.flatnonzero(np.diff(file_rows) != 1) + 1  # runs of consecutive rows: one call each
        for a, b in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(file_rows)].tolist(), strict=False):
            view, offset = buf[a * step:b * step], self._offset + int(file_rows[a]) * step
            while len(view):  # one call reads at most ~2 GB
                got = os.preadv(self._fd, [view], offset)
                if got <= 0:
                    raise DataError(f"{self.path}: {self.name} ends early (rows from {file_rows[a]}); "
                                    "the file changed or was truncated while in use")
                view, offset = view[got:], offset + got
        return out
