"""A run folder's cell files, ``predictions.h5ad`` and ``real.h5ad``, and its metrics files.

``predictions.h5ad`` (predicted cells + the real control cells) and ``real.h5ad`` (held-out real
cells + the same control cells) are written so that Arc Institute's cell-eval accepts them as they
are: identical ``var_names`` in the same order, the same perturbation labels (control included),
the input's obs column names, and non-negative values below 15 (predictions are clipped only when
needed, and the number of clipped values is reported); gzip-compressed, which every h5ad reader
reads as it is. ``predictions.h5ad`` also names each
predicted cell's matched control cell (``ctrl_cell_barcode``, as STATE's output does), so an
ensemble can reuse a member's saved cells with their controls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..data.dataset import BATCH, CONTEXT, PERT, PerturbationData
from ..data.loading import read_anndata
from ..errors import DataError
from ..files import write_csv, write_h5ad, write_json
from ..interfaces import CELL_EVAL_MAX as CLIP_MAX
from .fingerprints import file_digest


def write_metrics(run_dir: str | Path, table: pd.DataFrame, summary: Mapping[str, Any],
                  run_info: Mapping[str, Any]) -> None:
    """metrics.csv (perturbation x cell line x metric) and metrics.json ({run, metrics}), each
    written atomically; metrics.json last, since it marks the folder finished."""
    run_dir = Path(run_dir)
    write_csv(run_dir / "metrics.csv", table)
    write_json(run_dir / "metrics.json", {"run": dict(run_info), "metrics": dict(summary)})


#: the cell files' matrices are gzip-compressed HDF5 datasets (any h5ad reader, cell-eval's included,
#: reads them as they are): a third smaller for predictions, over half for real cells
COMPRESSION = "gzip"

#: predictions.h5ad's column naming each predicted cell's matched control cell (as STATE's output does)
CONTROL_CELL = "ctrl_cell_barcode"
#: metrics.json's run.outputs key holding predictions.h5ad's content hash
PREDICTIONS_DIGEST = "predictions_digest"


def column_names(data: PerturbationData) -> dict[str, str]:
    """The obs column names the cell files use: the input's own."""
    names = {PERT: data.columns.get(PERT) or "gene", CONTEXT: data.columns.get(CONTEXT) or "cell_line"}
    if BATCH in data.obs and data.columns.get(BATCH):
        names[BATCH] = str(data.columns[BATCH])
    return names


def _categorical(obs: pd.DataFrame) -> pd.DataFrame:
    for col in obs:
        obs[col] = pd.Categorical(obs[col].astype(object))
    return obs


def _control_block(data: PerturbationData, contexts: Sequence[str],
                   names: dict[str, str]) -> tuple[np.ndarray, pd.DataFrame]:
    idx = np.concatenate([data.control_indices(c) for c in contexts]) if contexts else np.empty(0, int)
    obs = pd.DataFrame({names[k]: data.obs[k].to_numpy()[idx] for k in names}, index=data.obs.index[idx].astype(str))
    return data.X[idx], obs


@dataclass
class CellEvalData:
    """predictions.h5ad and real.h5ad as AnnData (what :func:`write_cell_eval_files` writes) and
    what was done to them (cells, clipped values); the Python API hands them out without a reread."""

    predictions: ad.AnnData
    real: ad.AnnData
    info: dict[str, Any]

    def write(self, run_dir: str | Path) -> dict[str, Any]:
        """Both files; what was written, with predictions.h5ad's content hash (``predictions_digest``:
        an ensemble reuses a member's predicted cells only from the file its run wrote)."""
        run_dir = Path(run_dir)
        write_h5ad(run_dir / "predictions.h5ad", self.predictions, compression=COMPRESSION)
        write_h5ad(run_dir / "real.h5ad", self.real, compression=COMPRESSION)
        return {**self.info, PREDICTIONS_DIGEST: file_digest(run_dir / "predictions.h5ad")}


class HeldCells:
    """``predictions`` and ``real`` as AnnData for a result (a run, a prediction): the
    :class:`CellEvalData` it holds in ``cells``, else the files of its ``folder``, read on demand."""

    cells: CellEvalData | None
    folder: Path | None

    @property
    def predictions(self) -> ad.AnnData:
        """predictions.h5ad: the predicted cells + the real control cells."""
        return self.cells.predictions if self.cells is not None else self._read("predictions.h5ad")

    @property
    def real(self) -> ad.AnnData:
        """real.h5ad: the held-out real cells + the same control cells."""
        return self.cells.real if self.cells is not None else self._read("real.h5ad")

    def _read(self, name: str) -> ad.AnnData:
        path = Path(self.folder or ".") / name
        if self.folder is None or not path.is_file():
            raise DataError(f"{path}: not found, and the result holds no cells (keep_cells=False); "
                            "run it again with keep_cells=True")
        return read_anndata(path)


def write_cell_eval_files(run_dir: str | Path, predictions: Sequence[Any], data: PerturbationData) -> dict[str, Any]:
    """Write predictions.h5ad and real.h5ad; return what was done (cells, clipped values)."""
    return cell_eval_data(predictions, data, where=run_dir).write(run_dir)


def cell_eval_data(predictions: Sequence[Any], data: PerturbationData, where: Any = "predictions") -> CellEvalData:
    """The predicted cells (+ the real controls) and the held-out real cells (+ the same controls)
    as cell-eval-compatible AnnData; ``where`` names the output in the error for no predictions."""
    if not predictions:
        raise DataError(f"{where}: no predictions to write (the split has no test groups)")
    names = column_names(data)
    contexts = list(dict.fromkeys(p.context for p in predictions))
    ctrl_x, ctrl_obs = _control_block(data, contexts, names)
    batches = data.obs[BATCH].to_numpy() if BATCH in names else None

    # rows of each group in the full data (positions in data.obs, looked up once)
    rows_of = data.obs.groupby([PERT, CONTEXT], observed=True, sort=False).indices
    pred_blocks, pred_obs, real_blocks, real_obs = [], [], [], []
    cell_names = data.obs.index.astype(str).to_numpy()
    for p in predictions:
        n = len(p.pred)
        rows = {names[PERT]: [p.pert] * n, names[CONTEXT]: [p.context] * n}
        index = getattr(p, "ctrl_index", None)
        matched = index is not None and len(index) == n
        if batches is not None:
            rows[names[BATCH]] = batches[index] if matched else [None] * n
        rows[CONTROL_CELL] = cell_names[index] if matched else [None] * n
        pred_obs.append(pd.DataFrame(rows, index=[f"pred:{p.pert}:{p.context}:{i}" for i in range(n)]))
        pred_blocks.append(np.asarray(p.pred, dtype=np.float32))
        real_idx = np.asarray(rows_of.get((p.pert, p.context), []), dtype=np.int64)  # none: never measured
        real_obs.append(pd.DataFrame({names[k]: data.obs[k].to_numpy()[real_idx] for k in names},
                                     index=data.obs.index[real_idx].astype(str)))
        real_blocks.append(data.X[real_idx])

    pred_x = np.concatenate(pred_blocks)
    outside = int(((pred_x < 0) | (pred_x > CLIP_MAX)).sum())
    if outside:
        pred_x = np.clip(pred_x, 0.0, CLIP_MAX)
    real_x = np.concatenate([*real_blocks, ctrl_x])
    real_outside = int(((real_x < 0) | (real_x > CLIP_MAX)).sum())
    var = pd.DataFrame(index=pd.Index([str(f) for f in data.features]))
    info = {
        "predicted_cells": int(len(pred_x)), "real_cells": int(sum(len(b) for b in real_blocks)),
        "control_cells": int(len(ctrl_x)), "clipped_values": outside,
        "clipped_fraction": outside / max(pred_x.size, 1), "real_values_outside_0_15": real_outside,
    }
    uns = {"ptrag": {"clip_range": [0.0, 15.0], **{k: v for k, v in info.items()}}}
    pred_ctrl_obs = ctrl_obs.assign(**{CONTROL_CELL: ctrl_obs.index.to_numpy()})  # a control cell is its own
    pred = ad.AnnData(X=np.concatenate([pred_x, ctrl_x]).astype(np.float32),
                      obs=_categorical(pd.concat([*pred_obs, pred_ctrl_obs])), var=var.copy(), uns=uns)
    real = ad.AnnData(X=real_x.astype(np.float32), obs=_categorical(pd.concat([*real_obs, ctrl_obs])),
                      var=var.copy(), uns={"ptrag": {"real_values_outside_0_15": real_outside}})
    return CellEvalData(pred, real, info)


def describe_cell_eval_files(info: Mapping[str, Any]) -> str:
    """One log line about the written files."""
    text = (f"wrote predictions.h5ad ({info['predicted_cells']:,} predicted + {info['control_cells']:,} control cells) "
            f"and real.h5ad ({info['real_cells']:,} held-out cells)")
    if info["clipped_values"]:
        text += f"; clipped {info['clipped_values']:,} predicted values ({info['clipped_fraction']:.2%}) to [0, 15)"
    if info["real_values_outside_0_15"]:
        text += (f"; note: {info['real_values_outside_0_15']:,} real values lie outside [0, 15), "
                 "so cell-eval may reject real.h5ad (is the data log1p-normalised?)")
    return text
