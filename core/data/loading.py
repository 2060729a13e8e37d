"""Read a screen (an .h5ad file or the built-in dataset) into :class:`PerturbationData`.

Files are read with h5py through anndata's element readers: ``obs`` first (only the columns we
need), then the expression matrix in row blocks straight into one array (float32, or float16 with
``data.dtype``). So a 643k x 2,000 file needs the matrix once plus a block, never several dense
copies, and cells of dropped groups are never materialised. With ``data.backed`` the same single
pass keeps no matrix at all: it checks the values, sums the group and control means the retrieval
database needs, and copies only the control cells; training then reads rows from the file
(:class:`store.BackedStore`). Validation (see :mod:`validation`) runs on the labels before the
matrix is touched and on every block while it is read.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import DataError, PtragError
from .builtin import builtin_screen, describe
from .dataset import BATCH, CONTEXT, PERT, PerturbationData, StreamedMeans
from .store import BackedStore, HalfStore
from .validation import ValueCheck, plan_cells

log = logging.getLogger("ptrag.data")
BLOCK_ROWS = 8192
FLOAT16_MAX = float(np.finfo(np.float16).max)

try:  # anndata >= 0.11
    from anndata.io import read_elem, sparse_dataset
except ImportError:  # pragma: no cover - older anndata
    from anndata.experimental import read_elem, sparse_dataset


def load_screen(cfg: Any, *, control_like: str = "error") -> PerturbationData:
    """The configured .h5ad file, or the built-in dataset when ``cfg.path`` is empty; the latter
    comes from ``cfg.seed`` (``data.seed``), never the run seed, so every run sees the same data."""
    if cfg.path:
        return read_screen(cfg.path, cfg, control_like=control_like)
    family = getattr(cfg, "synth_family", "v3")
    return adata_to_data(builtin_screen(cfg.synth_preset, cfg.seed, family), cfg,
                         describe(cfg.synth_preset, cfg.seed, family), control_like=control_like)


def read_screen(path: str | Path, cfg: Any, *, control_like: str = "error") -> PerturbationData:
    """Read and validate an .h5ad file without loading more than one copy of the matrix.
    ``control_like``: see :func:`validation.plan_cells` (``report`` for data inspect)."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    with _reading(path):
        f = h5py.File(path, "r")
    with f, _reading(path):
        if "obs" not in f:
            raise DataError(f"{path}: cannot be read as .h5ad: an HDF5 file without obs, not an AnnData (its top "
                            f"level: {', '.join(list(f.keys())[:8]) or 'empty'}); write the screen with anndata")
        if not isinstance(f["obs"], h5py.Group):
            if _backed(cfg):
                raise DataError(f"{path}: an old .h5ad layout (obs not a group) cannot be read backed; set "
                                "data.backed=false, or rewrite it with anndata (read_h5ad, then write_h5ad)")
            return _read_with_anndata(path, cfg, control_like)  # very old layout: let anndata convert it
        obs = _read_obs_columns(f, cfg, source)
        plan = plan_cells(obs, cfg, source, control_like=control_like)
        matrix, where = _locate_matrix(f, cfg.embed_key, source)
        n_rows, n_cols = _shape(matrix)
        if n_rows != len(obs):
            raise DataError(f"{path}: {where} has {n_rows} rows but obs has {len(obs)} cells")
        var = read_elem(f["var"]) if "var" in f else pd.DataFrame(index=[])
        features, feature_note = _feature_names(var, n_cols, cfg.embed_key, source)
        labels = _labels(plan)
        means = None
        if _backed(cfg):
            X, check, means = _stream_backed(matrix, plan, labels, cfg, where, source, path)
        else:
            X, check = _read_rows(matrix, plan.keep, obs.index, where, source, _dtype_of(cfg))
        info = {"expression": where, "storage": _storage(matrix), "stored_dtype": _dtype(matrix),
                "n_vars": len(var)}
        truth = _synth_truth(f)
    return _finish(X, labels, plan, features, cfg, source, check, info, feature_note, truth, means)


def read_anndata(path: str | Path, **kwargs: Any) -> ad.AnnData:
    """``anndata.read_h5ad`` of a file ptrag wrote or reads back (a run's predictions.h5ad), a
    damaged or foreign file being one line naming it (:func:`_reading`)."""
    with _reading(Path(path)):
        return ad.read_h5ad(path, **kwargs)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Any failure of h5py or anndata while reading ``path`` as one line naming the file (a
    truncated copy, a damaged block, an HDF5 file that is no AnnData): never a library's traceback."""
    try:
        with warnings.catch_warnings():  # duplicated names are ptrag's own error or note, said once
            warnings.filterwarnings("ignore", message=r"(Variable|Observation) names are not unique")
            yield
    except (PtragError, MemoryError):  # ours already name the file; memory is not damage
        raise
    except Exception as exc:
        raise DataError(_unreadable(path, exc)) from None


def _unreadable(path: Path, exc: BaseException) -> str:
    """Why ``path`` cannot be read as .h5ad, in words, with what to do."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    truncated = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if truncated:
        have, want = (int(x) for x in truncated.groups())
        return (f"{path}: cannot be read as .h5ad: the file is truncated ({have:,} of {want:,} bytes; an "
                "interrupted copy or write?); copy or write it again")
    if "file signature not found" in text:
        return f"{path}: cannot be read as .h5ad: not an HDF5 file (its first bytes are not HDF5's signature)"
    return (f"{path}: cannot be read as .h5ad ({type(exc).__name__}: {text}); the file may be damaged or not "
            "written by anndata: write it again (anndata: adata.write_h5ad)")


def adata_to_data(adata: ad.AnnData, cfg: Any, source: str, *, control_like: str = "error") -> PerturbationData:
    """Validate an in-memory (or backed) AnnData and convert it; same checks as for files."""
    if _backed(cfg):
        raise DataError(f"{source}: data.backed=true reads the rows of an .h5ad file (data.path) on demand, and this "
                        "data is made in memory; set data.backed=false or write it to a file first "
                        "(ptrag data synth -o)")
    cols = [c for c in (cfg.pert_col, cfg.context_col, cfg.batch_col) if c and c in adata.obs]
    obs = adata.obs[cols].copy()
    plan = plan_cells(obs, cfg, source, control_like=control_like)
    if cfg.embed_key == "X":
        if adata.X is None:
            raise DataError(f"{source}: .X is empty; available: {', '.join(_keys(adata.obsm))} (set data.embed_key)")
        matrix, where = adata.X, ".X"
    elif cfg.embed_key in adata.obsm:
        matrix, where = adata.obsm[cfg.embed_key], f"obsm[{cfg.embed_key!r}]"
    else:
        avail = ([] if adata.X is None else ["X"]) + _keys(adata.obsm)
        raise DataError(f"{source}: no expression under obsm[{cfg.embed_key!r}]; available: "
                        f"{', '.join(avail) or 'none'} (set data.embed_key)")
    features, feature_note = _feature_names(adata.var, matrix.shape[1], cfg.embed_key, source)
    X, check = _read_rows(matrix, plan.keep, obs.index, where, source, _dtype_of(cfg))
    info = {"expression": where, "storage": "sparse" if sp.issparse(matrix) else "dense",
            "stored_dtype": str(getattr(matrix, "dtype", "mixed")), "n_vars": adata.n_vars}
    truth = _plain(adata.uns["ptrag_synth"]) if "ptrag_synth" in adata.uns else None
    return _finish(X, _labels(plan), plan, features, cfg, source, check, info, feature_note, truth)


# --------------------------------------------------------------------------- helpers


def _backed(cfg: Any) -> bool:
    return bool(getattr(cfg, "backed", False))


def _dtype_of(cfg: Any) -> type:
    return np.float16 if getattr(cfg, "dtype", "float32") == "float16" else np.float32


def _beyond_float16(dtype, check: ValueCheck) -> bool:
    return np.dtype(dtype) == np.float16 and max(abs(check.vmin), abs(check.vmax)) > FLOAT16_MAX


def _labels(plan) -> pd.DataFrame:
    """The kept cells' normalised labels (pert, context, batch) as string categoricals."""
    obs = pd.DataFrame({PERT: plan.obs[PERT].to_numpy(), CONTEXT: plan.obs[CONTEXT].to_numpy()},
                       index=plan.obs.index)
    if BATCH in plan.obs:
        obs[BATCH] = plan.obs[BATCH].to_numpy()
    for col in obs:
        obs[col] = pd.Categorical(obs[col].astype(str))
    return obs


def _finish(X, obs, plan, features, cfg, source, check: ValueCheck, info, feature_note, truth,
            means: StreamedMeans | None = None) -> PerturbationData:
    check.raise_if_bad()
    if _beyond_float16(_dtype_of(cfg), check):
        raise DataError(f"{source}: {info['expression']} has values up to {max(abs(check.vmin), abs(check.vmax)):.4g}, "
                        f"beyond float16's range ({FLOAT16_MAX:,.0f}); set data.dtype=float32 "
                        "(or give log-normalised expression)")
    notes = list(plan.notes)
    if feature_note:
        notes.append(f"{source}: {feature_note}")
    if check.negative:
        notes.append(check.negative_message())
    for line in notes:
        log.warning(line)
    info.update(plan.counts, value_min=check.vmin, value_max=check.vmax, zeros=check.zero_fraction,
                memory=_memory_mode(X), held_bytes=int(X.nbytes),
                expression_problem=check.expression_problem(), median_library_size=check.median_library_size,
                control_like=plan.control_like)
    return PerturbationData(
        X=X, obs=obs, features=features, control_label=cfg.control_label, source=source,
        columns={PERT: cfg.pert_col, CONTEXT: cfg.context_col, BATCH: cfg.batch_col if BATCH in obs else None},
        notes=notes, info=info, truth=truth, means=means, modality=dict(plan.modality),
    )


def _memory_mode(X) -> str:
    if isinstance(X, BackedStore):
        return f"backed: rows read from the file, {len(X.held):,} control cells held as {X.held.dtype}"
    return f"{'float16' if isinstance(X, HalfStore) else 'float32'} in memory"


def _read_obs_columns(f: h5py.File, cfg: Any, source: str) -> pd.DataFrame:
    group = f["obs"]
    index_key = group.attrs.get("_index", "_index")
    index = read_elem(group[index_key]) if index_key in group else np.arange(group.attrs.get("shape", [0])[0])
    columns = [str(c) for c in group.attrs.get("column-order", [k for k in group if k != index_key])]
    out = {}
    for col in (cfg.pert_col, cfg.context_col, cfg.batch_col, getattr(cfg, "modality_col", None)):
        if col and col in columns and col not in out:
            out[col] = read_elem(group[col])
    obs = pd.DataFrame(out, index=pd.Index(np.asarray(index).astype(str)))
    obs.attrs["all_columns"] = columns
    return obs


def _locate_matrix(f: h5py.File, key: str, source: str):
    obsm = list(f["obsm"].keys()) if "obsm" in f else []
    if key == "X":
        if "X" not in f:
            raise DataError(f"{source}: the file has no .X; available: {', '.join(obsm) or 'none'} "
                            "(set data.embed_key)")
        return f["X"], ".X"
    if key not in obsm:
        avail = (["X"] if "X" in f else []) + obsm
        raise DataError(f"{source}: no expression under obsm[{key!r}]; available: {', '.join(avail) or 'none'} "
                        f"(set data.embed_key)")
    return f["obsm"][key], f"obsm[{key!r}]"


def _is_sparse_group(elem) -> bool:
    return isinstance(elem, h5py.Group) and str(elem.attrs.get("encoding-type", "")).endswith("_matrix")


def _shape(elem) -> tuple[int, int]:
    if _is_sparse_group(elem):
        return tuple(int(x) for x in elem.attrs["shape"])
    if isinstance(elem, h5py.Group):
        raise DataError(f"{elem.file.filename}: {elem.name} is a {elem.attrs.get('encoding-type', 'group')}, "
                        f"not an expression matrix")
    if elem.ndim != 2:
        raise DataError(f"{elem.file.filename}: {elem.name} has {elem.ndim} dimension(s), expected 2")
    return tuple(int(x) for x in elem.shape)


def _storage(elem) -> str:
    if _is_sparse_group(elem):
        return str(elem.attrs["encoding-type"]).replace("_matrix", "").upper() + " sparse"
    return "dense"


def _dtype(elem) -> str:
    return str(elem["data"].dtype if _is_sparse_group(elem) else elem.dtype)


def _feature_names(var: pd.DataFrame, n_cols: int, key: str, source: str) -> tuple[list[str], str | None]:
    names = list(map(str, var.index))
    if key != "X" and "highly_variable" in var:
        hv = var["highly_variable"].to_numpy(bool)
        if hv.sum() == n_cols:
            return _unique([n for n, keep in zip(names, hv, strict=False) if keep], source,
                           f"var_names where var['highly_variable'] (the features of obsm[{key!r}])"), None
    if len(names) == n_cols:
        return _unique(names, source, "var_names"), None
    return ([f"{key}_{i}" for i in range(n_cols)],
            f"obsm[{key!r}] has {n_cols} columns but var has {len(names)} genes and no matching "
            f"'highly_variable' mask; features are named {key}_0..{key}_{n_cols - 1}")


def _unique(features: list[str], source: str, where: str) -> list[str]:
    """Feature names must be unique: a gene's mean, its DE rank and its column in the outputs all go by name."""
    index = pd.Index(features)
    if index.is_unique:
        return features
    repeated = list(dict.fromkeys(index[index.duplicated()]))
    raise DataError(f"{source}: {len(repeated)} feature name(s) appear more than once in {where} (first: "
                    f"{', '.join(repeated[:5])}{', ...' if len(repeated) > 5 else ''}); ptrag needs unique gene names: "
                    "merge or drop the duplicates, or call adata.var_names_make_unique(), and write the file again")


def _n_rows_cols(matrix) -> tuple[int, int]:
    return _shape(matrix) if _is_sparse_group(matrix) else (int(matrix.shape[0]), int(matrix.shape[1]))


def _kept_blocks(matrix, keep: np.ndarray, cell_names: pd.Index, check: ValueCheck):
    """(position among kept cells, block of kept rows) over the matrix in file order, each checked."""
    n_rows = _n_rows_cols(matrix)[0]
    if _is_sparse_group(matrix):
        matrix = sparse_dataset(matrix)
    pos = 0
    for start in range(0, n_rows, BLOCK_ROWS):
        stop = min(n_rows, start + BLOCK_ROWS)
        mask = keep[start:stop]
        if not mask.any():
            continue
        block = matrix[start:stop]
        if sp.issparse(block):
            block = block.toarray()
        block = np.asarray(block)
        names = cell_names[start:stop]
        if not mask.all():
            block, names = block[mask], names[mask]
        check.update(block, names)
        yield pos, block
        pos += len(block)


def _read_rows(matrix, keep: np.ndarray, cell_names: pd.Index, where: str, source: str, dtype=np.float32):
    """The kept rows as one C-contiguous array (float32, or float16 wrapped in a HalfStore)."""
    check = ValueCheck(where, source)
    if (dtype is np.float32 and isinstance(matrix, np.ndarray) and keep.all() and matrix.dtype == np.float32
            and matrix.flags.c_contiguous):
        for start in range(0, len(matrix), BLOCK_ROWS):  # already what we need: check, do not copy
            check.update(matrix[start:start + BLOCK_ROWS], cell_names[start:start + BLOCK_ROWS])
        return matrix, check
    out = np.empty((int(keep.sum()), _n_rows_cols(matrix)[1]), dtype=dtype)
    for pos, block in _kept_blocks(matrix, keep, cell_names, check):
        if _beyond_float16(dtype, check):
            break  # _finish says so
        out[pos:pos + len(block)] = block
    return (HalfStore(out) if dtype is np.float16 else out), check


def _stream_backed(matrix, plan, labels: pd.DataFrame, cfg: Any, where: str, source: str, path: Path):
    """One pass over the file that keeps no matrix: checks values, sums group and control means,
    and copies the control cells into the store (every cell set reads them)."""
    if _is_sparse_group(matrix) and not str(matrix.attrs["encoding-type"]).startswith("csr"):
        raise DataError(f"{source}: {where} is stored {_storage(matrix)}, whose rows cannot be read one by one; "
                        "set data.backed=false, or store it dense or CSR")
    n_cols = _n_rows_cols(matrix)[1]
    is_ctrl = (labels[PERT] == cfg.control_label).to_numpy()
    codes, group_keys, control_keys = _mean_codes(labels, is_ctrl)
    store = BackedStore(str(path), matrix.name, np.flatnonzero(plan.keep), n_cols, sparse=_is_sparse_group(matrix),
                        held=np.flatnonzero(is_ctrl), held_dtype=_dtype_of(cfg))
    n_keys = len(group_keys) + len(control_keys)
    sums = np.zeros((n_keys, n_cols), dtype=np.float64)
    check = ValueCheck(where, source)
    for pos, block in _kept_blocks(matrix, plan.keep, plan.obs.index, check):
        stop = pos + len(block)
        present, local = np.unique(codes[pos:stop], return_inverse=True)
        one_hot = sp.csr_matrix((np.ones(len(block), block.dtype), (local, np.arange(len(block)))),
                                shape=(len(present), len(block)))
        sums[present] += one_hot @ block  # per-block sums (BLOCK_ROWS cells at most), then float64
        ctrl = is_ctrl[pos:stop]
        if not _beyond_float16(store.held.dtype, check):
            store.held[store.held_slot[pos:stop][ctrl]] = block[ctrl]
    counts = np.bincount(codes, minlength=n_keys)

    def mean(i: int) -> np.ndarray:
        return (sums[i] / counts[i]).astype(np.float32)

    n_groups = len(group_keys)
    means = StreamedMeans(
        groups={key: mean(i) for i, key in enumerate(group_keys)},
        controls={key: (mean(n_groups + i), int(counts[n_groups + i])) for i, key in enumerate(control_keys)},
    )
    return store, check, means


def _mean_codes(labels: pd.DataFrame, is_ctrl: np.ndarray):
    """Per cell: the index of its (pert, context) group, or after those of its (context, batch) controls."""
    codes = np.empty(len(labels), dtype=np.int64)
    perturbed = pd.MultiIndex.from_arrays([labels[PERT].to_numpy()[~is_ctrl], labels[CONTEXT].to_numpy()[~is_ctrl]])
    codes[~is_ctrl], groups = pd.factorize(perturbed)
    has_batch = BATCH in labels
    batch = labels[BATCH].to_numpy()[is_ctrl] if has_batch else np.full(int(is_ctrl.sum()), "")
    ctrl_codes, controls = pd.factorize(pd.MultiIndex.from_arrays([labels[CONTEXT].to_numpy()[is_ctrl], batch]))
    codes[is_ctrl] = len(groups) + ctrl_codes
    return (codes, [(str(p), str(c)) for p, c in groups],
            [(str(c), str(b) if has_batch else None) for c, b in controls])


def _keys(mapping) -> list[str]:
    return [str(k) for k in mapping.keys()]


def _synth_truth(f: h5py.File) -> dict | None:
    if "uns" in f and "ptrag_synth" in f["uns"]:
        try:
            return _plain(read_elem(f["uns"]["ptrag_synth"]))
        except Exception:  # a malformed ground truth must not block loading the data
            return None
    return None


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _read_with_anndata(path: Path, cfg: Any, control_like: str) -> PerturbationData:
    adata = ad.read_h5ad(path, backed="r")  # inside read_screen's _reading: failures name the file
    return adata_to_data(adata, cfg, str(path), control_like=control_like)
