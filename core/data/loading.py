"""Read a screen (an .h5ad file or the built-in dataset) into :class:`PerturbationData`.

Files are read with h5py through anndata's element readers: ``obs`` first (only the columns we
need), then the expression matrix in row blocks straight into one float32 array. So a
643k x 2,000 file needs the matrix once plus a block, never several dense copies, and cells of
dropped groups are never materialised. Validation (see :mod:`validation`) runs on the labels
before the matrix is touched and on every block while it is read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import DataError
from .dataset import BATCH, CONTEXT, PERT, PerturbationData
from .validation import ValueCheck, plan_cells

log = logging.getLogger("ptrag.data")
BLOCK_ROWS = 8192

try:  # anndata >= 0.11
    from anndata.io import read_elem, sparse_dataset
except ImportError:  # pragma: no cover - older anndata
    from anndata.experimental import read_elem, sparse_dataset


def load_screen(cfg: Any) -> PerturbationData:
    """The configured .h5ad file, or the built-in dataset when ``cfg.path`` is empty; the latter
    comes from ``cfg.seed`` (``data.seed``), never the run seed, so every run sees the same data."""
    if cfg.path:
        return read_screen(cfg.path, cfg)
    from .synth import synth_screen

    return adata_to_data(synth_screen(cfg.synth_preset, cfg.seed), cfg,
                         f"built-in {cfg.synth_preset} dataset (data seed {cfg.seed})")


def read_screen(path: str | Path, cfg: Any) -> PerturbationData:
    """Read and validate an .h5ad file without loading more than one copy of the matrix."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: cannot be read as .h5ad (not an HDF5 file: {exc})") from None
    with f:
        if "obs" not in f or not isinstance(f["obs"], h5py.Group):
            return _read_with_anndata(path, cfg)  # very old layout: let anndata convert it
        obs = _read_obs_columns(f, cfg, source)
        plan = plan_cells(obs, cfg, source)
        matrix, where = _locate_matrix(f, cfg.embed_key, source)
        n_rows, n_cols = _shape(matrix)
        if n_rows != len(obs):
            raise DataError(f"{path}: {where} has {n_rows} rows but obs has {len(obs)} cells")
        var = read_elem(f["var"]) if "var" in f else pd.DataFrame(index=[])
        features, feature_note = _feature_names(var, n_cols, cfg.embed_key)
        X, check = _read_rows(matrix, plan.keep, obs.index, where, source)
        info = {"expression": where, "storage": _storage(matrix), "stored_dtype": _dtype(matrix),
                "n_vars": len(var)}
        truth = _synth_truth(f)
    return _finish(X, plan, features, cfg, source, check, info, feature_note, truth)


def adata_to_data(adata: ad.AnnData, cfg: Any, source: str) -> PerturbationData:
    """Validate an in-memory (or backed) AnnData and convert it; same checks as for files."""
    cols = [c for c in (cfg.pert_col, cfg.context_col, cfg.batch_col) if c and c in adata.obs]
    obs = adata.obs[cols].copy()
    plan = plan_cells(obs, cfg, source)
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
    features, feature_note = _feature_names(adata.var, matrix.shape[1], cfg.embed_key)
    X, check = _read_rows(matrix, plan.keep, obs.index, where, source)
    info = {"expression": where, "storage": "sparse" if sp.issparse(matrix) else "dense",
            "stored_dtype": str(getattr(matrix, "dtype", "mixed")), "n_vars": adata.n_vars}
    truth = _plain(adata.uns["ptrag_synth"]) if "ptrag_synth" in adata.uns else None
    return _finish(X, plan, features, cfg, source, check, info, feature_note, truth)


# --------------------------------------------------------------------------- helpers


def _finish(X, plan, features, cfg, source, check: ValueCheck, info, feature_note, truth) -> PerturbationData:
    check.raise_if_bad()
    notes = list(plan.notes)
    if feature_note:
        notes.append(f"{source}: {feature_note}")
    if check.negative:
        notes.append(check.negative_message())
    for line in notes:
        log.warning(line)
    obs = pd.DataFrame({PERT: plan.obs[PERT].to_numpy(), CONTEXT: plan.obs[CONTEXT].to_numpy()},
                       index=plan.obs.index)
    if BATCH in plan.obs:
        obs[BATCH] = plan.obs[BATCH].to_numpy()
    for col in obs:
        obs[col] = pd.Categorical(obs[col].astype(str))
    info.update(plan.counts, value_min=check.vmin, value_max=check.vmax, zeros=check.zero_fraction)
    return PerturbationData(
        X=X, obs=obs, features=features, control_label=cfg.control_label, source=source,
        columns={PERT: cfg.pert_col, CONTEXT: cfg.context_col, BATCH: cfg.batch_col if BATCH in obs else None},
        notes=notes, info=info, truth=truth,
    )


def _read_obs_columns(f: h5py.File, cfg: Any, source: str) -> pd.DataFrame:
    group = f["obs"]
    index_key = group.attrs.get("_index", "_index")
    index = read_elem(group[index_key]) if index_key in group else np.arange(group.attrs.get("shape", [0])[0])
    columns = [str(c) for c in group.attrs.get("column-order", [k for k in group if k != index_key])]
    out = {}
    for col in (cfg.pert_col, cfg.context_col, cfg.batch_col):
        if col and col in columns and col not in out:
            out[col] = read_elem(group[col])
    obs = pd.DataFrame(out, index=pd.Index(np.asarray(index).astype(str)))
    obs.attrs["all_columns"] = columns
    return obs


def _locate_matrix(f: h5py.File, key: str, source: str):
    obsm = list(f["obsm"].keys()) if "obsm" in f else []
    if key == "X":
        if "X" not in f:
            raise DataError(f"{source}: the file has no .X; available: {', '.join(obsm) or 'none'} (set data.embed_key)")
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


def _feature_names(var: pd.DataFrame, n_cols: int, key: str) -> tuple[list[str], str | None]:
    names = list(map(str, var.index))
    if key != "X" and "highly_variable" in var:
        hv = var["highly_variable"].to_numpy(bool)
        if hv.sum() == n_cols:
            return [n for n, keep in zip(names, hv) if keep], None
    if len(names) == n_cols:
        return names, None
    return ([f"{key}_{i}" for i in range(n_cols)],
            f"obsm[{key!r}] has {n_cols} columns but var has {len(names)} genes and no matching "
            f"'highly_variable' mask; features are named {key}_0..{key}_{n_cols - 1}")


def _read_rows(matrix, keep: np.ndarray, cell_names: pd.Index, where: str, source: str):
    """The kept rows as one C-contiguous float32 array, read and checked block by block."""
    n_rows = int(matrix.shape[0]) if not _is_sparse_group(matrix) else _shape(matrix)[0]
    n_cols = int(matrix.shape[1]) if not _is_sparse_group(matrix) else _shape(matrix)[1]
    check = ValueCheck(where, source)
    if isinstance(matrix, np.ndarray) and keep.all() and matrix.dtype == np.float32 and matrix.flags.c_contiguous:
        for start in range(0, n_rows, BLOCK_ROWS):  # already what we need: check, do not copy
            check.update(matrix[start:start + BLOCK_ROWS], cell_names[start:start + BLOCK_ROWS])
        return matrix, check
    if _is_sparse_group(matrix):
        matrix = sparse_dataset(matrix)
    out = np.empty((int(keep.sum()), n_cols), dtype=np.float32)
    pos = 0
    for start in range(0, n_rows, BLOCK_ROWS):
        stop = min(n_rows, start + BLOCK_ROWS)
        mask = keep[start:stop]
        if not mask.any():
            continue
        block = matrix[start:stop]
        if sp.issparse(block):
            block = block.toarray()
        block = np.asarray(block)[mask]
        check.update(block, cell_names[start:stop][mask])
        out[pos:pos + len(block)] = block
        pos += len(block)
    return out, check


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


def _read_with_anndata(path: Path, cfg: Any) -> PerturbationData:
    try:
        adata = ad.read_h5ad(path, backed="r")
    except Exception as exc:
        raise DataError(f"{path}: cannot be read as .h5ad ({type(exc).__name__}: {exc})") from None
    return adata_to_data(adata, cfg, str(path))
