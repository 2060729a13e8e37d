"""A run folder's result files: metrics, cell-eval-compatible AnnData files, retrieval traces.

``predictions.h5ad`` (predicted cells + the real control cells) and ``real.h5ad`` (held-out real
cells + the same control cells) are written so that Arc Institute's cell-eval accepts them as they
are: identical ``var_names`` in the same order, the same perturbation labels (control included),
the input's obs column names, and non-negative values below 15 (predictions are clipped only when
needed, and the number of clipped values is reported).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from .data.dataset import BATCH, CONTEXT, PERT, PerturbationData
from .data.gene_modules import module_of
from .data.gene_sets import GeneSets
from .errors import DataError
from .run_folder import atomic_write, write_csv, write_json

CLIP_MAX = float(np.nextafter(np.float32(15.0), np.float32(0.0)))  # cell-eval wants values < 15
TRACE_COLUMNS = ["pert", "context", "rank", "candidate_pert", "candidate_context", "stage1_score", "keep_weight"]
KEEP_THRESHOLD = 0.5  # a candidate counts as kept when its keep-weight exceeds this


def write_metrics(run_dir: str | Path, table: pd.DataFrame, summary: Mapping[str, Any],
                  run_info: Mapping[str, Any]) -> None:
    """metrics.csv (perturbation x cell line x metric) and metrics.json ({run, metrics}), each
    written atomically; metrics.json last, since it marks the folder finished."""
    run_dir = Path(run_dir)
    write_csv(run_dir / "metrics.csv", table)
    write_json(run_dir / "metrics.json", {"run": dict(run_info), "metrics": dict(summary)})


def _column_names(data: PerturbationData) -> dict[str, str]:
    names = {PERT: data.columns.get(PERT) or "gene", CONTEXT: data.columns.get(CONTEXT) or "cell_line"}
    if BATCH in data.obs and data.columns.get(BATCH):
        names[BATCH] = str(data.columns[BATCH])
    return names


def _categorical(obs: pd.DataFrame) -> pd.DataFrame:
    for col in obs:
        obs[col] = pd.Categorical(obs[col].astype(object))
    return obs


def _control_block(data: PerturbationData, contexts: Sequence[str], names: dict[str, str]) -> tuple[np.ndarray, pd.DataFrame]:
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
        run_dir = Path(run_dir)
        atomic_write(run_dir / "predictions.h5ad", self.predictions.write_h5ad)
        atomic_write(run_dir / "real.h5ad", self.real.write_h5ad)
        return self.info


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
        return ad.read_h5ad(path)


def write_cell_eval_files(run_dir: str | Path, predictions: Sequence[Any], data: PerturbationData) -> dict[str, Any]:
    """Write predictions.h5ad and real.h5ad; return what was done (cells, clipped values)."""
    return cell_eval_data(predictions, data, where=run_dir).write(run_dir)


def cell_eval_data(predictions: Sequence[Any], data: PerturbationData, where: Any = "predictions") -> CellEvalData:
    """The predicted cells (+ the real controls) and the held-out real cells (+ the same controls)
    as cell-eval-compatible AnnData; ``where`` names the output in the error for no predictions."""
    if not predictions:
        raise DataError(f"{where}: no predictions to write (the split has no test groups)")
    names = _column_names(data)
    contexts = list(dict.fromkeys(p.context for p in predictions))
    ctrl_x, ctrl_obs = _control_block(data, contexts, names)
    batches = data.obs[BATCH].to_numpy() if BATCH in names else None

    # rows of each group in the full data (positions in data.obs, looked up once)
    rows_of = data.obs.groupby([PERT, CONTEXT], observed=True, sort=False).indices
    pred_blocks, pred_obs, real_blocks, real_obs = [], [], [], []
    for p in predictions:
        n = len(p.pred)
        rows = {names[PERT]: [p.pert] * n, names[CONTEXT]: [p.context] * n}
        if batches is not None:
            index = getattr(p, "ctrl_index", None)
            rows[names[BATCH]] = batches[index] if index is not None and len(index) == n else [None] * n
        pred_obs.append(pd.DataFrame(rows, index=[f"pred:{p.pert}:{p.context}:{i}" for i in range(n)]))
        pred_blocks.append(np.asarray(p.pred, dtype=np.float32))
        real_idx = np.asarray(rows_of[(p.pert, p.context)])
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
    pred = ad.AnnData(X=np.concatenate([pred_x, ctrl_x]).astype(np.float32),
                      obs=_categorical(pd.concat([*pred_obs, ctrl_obs])), var=var.copy(), uns=uns)
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


# --------------------------------------------------------------------------- retrieval diagnostics


def gene_modules_for(data: Any = None) -> Callable[[str], str | None]:
    """gene -> module from the built-in data's ground truth (``uns['ptrag_synth']``), else the
    curated complexes in core.data.gene_modules (real gene symbols). Any gene sets: ``data.gene_sets``."""
    truth = getattr(data, "uns", None) or {}
    synth = truth.get("ptrag_synth", {}) if isinstance(truth, Mapping) else {}
    for key in ("gene_module", "gene_modules", "modules", "module_of"):
        table = synth.get(key) if isinstance(synth, Mapping) else None
        if isinstance(table, Mapping) and table:
            first = next(iter(table.values()))
            if isinstance(first, str):
                mapping = {str(g): str(m) for g, m in table.items()}
            else:  # module -> genes
                mapping = {str(g): str(m) for m, genes in table.items() for g in np.atleast_1d(genes)}
            return lambda gene: mapping.get(gene)
    return module_of


def _share_rates(g: pd.DataFrame, annotated: pd.Series, shares: pd.Series) -> tuple[float, float, float]:
    """(among kept, among all candidates, keep-weighted) fraction sharing, over annotated queries."""
    a = g[annotated.loc[g.index]]
    kept = a[a.kept]
    share = shares.loc[a.index]
    weight = a["keep_weight"].astype(float)
    return (float(share.loc[kept.index].mean()) if len(kept) else float("nan"),
            float(share.mean()) if len(a) else float("nan"),
            float((weight * share).sum() / weight.sum()) if weight.sum() > 0 else float("nan"))


def retrieval_summary(trace: pd.DataFrame, module: Callable[[str], str | None] = module_of,
                      gene_sets: GeneSets | None = None) -> dict[str, Any]:
    """Per cell line: keep ratio, most often kept neighbours, and how often kept neighbours share
    the query's module (vs all stage-1 candidates, the chance level for the selector); with gene
    sets (GMT), the same for "query and candidate share at least one set"."""
    t = trace.copy()
    t["kept"] = t["keep_weight"].astype(float) > KEEP_THRESHOLD
    qm = t["pert"].astype(str).map(module)
    cm = t["candidate_pert"].astype(str).map(module)
    t["same_module"] = qm.notna() & (qm == cm)
    t["same_gene"] = t["pert"].astype(str) == t["candidate_pert"].astype(str)
    if gene_sets is not None:
        set_annotated = t["pert"].astype(str).map(gene_sets.annotated)
        shares = pd.Series([bool(gene_sets.shared(a, b)) for a, b in zip(t["pert"].astype(str),
                                                                          t["candidate_pert"].astype(str))],
                           index=t.index)
    out: dict[str, Any] = {}
    for context, g in t.groupby("context", sort=True):
        kept = g[g.kept]
        annotated = g[qm.loc[g.index].notna()]
        kept_annotated = annotated[annotated.kept]
        weight = g["keep_weight"].astype(float)
        out[str(context)] = entry = {
            "queries": int(g["pert"].nunique()),
            "candidates": int(len(g)),
            "keep_ratio": float(g.kept.mean()) if len(g) else float("nan"),
            "kept_same_module": float(kept_annotated.same_module.mean()) if len(kept_annotated) else float("nan"),
            "candidates_same_module": float(annotated.same_module.mean()) if len(annotated) else float("nan"),
            "weighted_same_module": (float((weight * g.same_module).sum() / weight.sum())
                                     if weight.sum() > 0 else float("nan")),
            "kept_same_gene": float(kept.same_gene.mean()) if len(kept) else float("nan"),
            "top_kept": [
                {"candidate": f"{p}|{c}", "times_kept": int(n)}
                for (p, c), n in kept.groupby(["candidate_pert", "candidate_context"]).size()
                .sort_values(ascending=False, kind="stable").head(10).items()
            ],
        }
        if gene_sets is not None:
            rates = _share_rates(g, set_annotated, shares)
            entry.update({"gene_set_queries": int(g.loc[set_annotated.loc[g.index], "pert"].nunique()),
                          "kept_shared_gene_set": rates[0], "candidates_shared_gene_set": rates[1],
                          "weighted_shared_gene_set": rates[2]})
    return out


def write_retrieval(run_dir: str | Path, trace: pd.DataFrame, data: Any = None,
                    gene_sets: GeneSets | None = None) -> dict[str, Any]:
    """retrieval.csv (one row per query x candidate) and retrieval_summary.json; returns the summary.

    ``gene_sets`` (``data.gene_sets``) adds the column ``shared_gene_sets`` (the sets holding both
    genes, ``;``-joined) and the ``*_shared_gene_set`` rates to the summary."""
    missing = [c for c in TRACE_COLUMNS if c not in trace.columns]
    if missing:
        raise DataError(f"retrieval trace lacks column(s) {', '.join(missing)}; expected {', '.join(TRACE_COLUMNS)}")
    run_dir = Path(run_dir)
    module = gene_modules_for(data)
    table = trace.copy()
    table["query_module"] = table["pert"].astype(str).map(module)
    table["candidate_module"] = table["candidate_pert"].astype(str).map(module)
    if gene_sets is not None:
        table["shared_gene_sets"] = [";".join(sorted(gene_sets.shared(a, b))) for a, b in
                                     zip(table["pert"].astype(str), table["candidate_pert"].astype(str))]
    write_csv(run_dir / "retrieval.csv", table)
    summary = retrieval_summary(trace, module, gene_sets)
    write_json(run_dir / "retrieval_summary.json", summary)  # rates without data are null, not NaN
    return summary
