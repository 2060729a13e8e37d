"""Arc Institute's cell-eval metrics, computed by cell-eval itself, as ptrag metrics.

Optional built-in (``pip install "ptrag[celleval]"``): without cell-eval this module does not
import, and the plugin manager lists it as absent with that command. Its metrics are named
``celleval:<cell-eval's name>`` so they cannot be confused with ptrag's own definitions.

cell-eval computes differential expression (pdex Wilcoxon against control, both sides) for every
perturbation at once, so all its metrics are set metrics: the first cell-eval metric the evaluator
asks about a cell line builds cell-eval's two AnnData from the arrays ptrag scores (exactly as
``predictions.h5ad`` / ``real.h5ad``: predictions clipped to [0, 15), the line's real control
cells in both, perturbation names as labels, the data's gene names as ``var_names``), runs
``MetricsEvaluator`` once and keeps every metric this plugin offers, per perturbation, in a small
cache keyed on the inputs; the other cell-eval metrics of that scoring pass read the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from ptrag.core.errors import DataError
from ptrag.core.hookspecs import BuildContext, ComponentParams, MetricSpec, hookimpl
from ptrag.core.interfaces import CELL_EVAL_MAX as CLIP_MAX
from ptrag.core.interfaces import LineCells, SetMetric
from ptrag.core.registry import builtin_entries

if importlib.util.find_spec("cell_eval") is None:  # checked cheaply: cell-eval itself imports in seconds
    raise ModuleNotFoundError("No module named 'cell_eval'", name="cell_eval")

PREFIX = "celleval:"
PERT_COL = "gene"
CONTROL = "non-targeting"


@dataclass(frozen=True)
class Offered:
    direction: Literal["lower", "higher"]  # from cell-eval's best value (1 -> higher, 0 -> lower)
    takes_n: bool = False  # overlap/precision: cell-eval also registers them at N = 50, 100, 200, 500


#: cell-eval's names of the metrics offered (ptrag's names add the prefix; summaries: registry.yaml)
OFFERED: dict[str, Offered] = {
    "pearson_delta": Offered("higher"),
    "mse": Offered("lower"),
    "mae": Offered("lower"),
    "discrimination_score_l1": Offered("higher"),
    "overlap_at_N": Offered("higher", takes_n=True),
    "precision_at_N": Offered("higher", takes_n=True),
    "de_direction_match": Offered("higher"),
    "de_spearman_lfc_sig": Offered("higher"),
    "de_sig_genes_recall": Offered("higher"),
}
N_VALUES = (50, 100, 200, 500)
#: every cell-eval metric one evaluation computes (cheap next to the DE they share)
COMPUTED = tuple(name for base, o in OFFERED.items()
                 for name in (base, *(base.replace("_N", f"_{n}") for n in N_VALUES if o.takes_n)))


class CellEvalParams(ComponentParams):
    threads: int = Field(0, ge=0, description="threads for cell-eval's DE (pdex, numba); 0 = every CPU this "
                                              "process may use. Results do not depend on it")


class CellEvalTopNParams(CellEvalParams):
    n: Literal[50, 100, 200, 500] | None = Field(
        None, description="N genes; none = as many as the real significant DE genes (cell-eval's overlap_at_N)")


class CellEvalMetric(SetMetric):
    """One cell-eval metric; every instance reads the per-line evaluation they share."""

    direction = "higher"
    space = "genes"

    def __init__(self, metric: str, direction: str, gene_names: Sequence[str], threads: int = 0):
        self.metric = metric  # cell-eval's column name, e.g. overlap_at_50
        self.name = self.label = PREFIX + metric
        self.direction = direction  # type: ignore[assignment]
        self.gene_names = tuple(str(g) for g in gene_names)
        self.threads = threads

    def compute_set(self, line: LineCells) -> np.ndarray:
        groups = line.groups
        table = line_results(line.preds, line.reals, line.ctrl, [p for p, _ in groups], self.gene_names,
                             context=groups[0][1] if groups else "", threads=self.threads)
        column = table.get(self.metric, {})  # absent when cell-eval had no value for any perturbation
        return np.array([column.get(pert, np.nan) for pert, _ in groups], dtype=float)


# --------------------------------------------------------------------------- one evaluation per line

_CACHE: OrderedDict[str, dict[str, dict[str, float]]] = OrderedDict()
_CACHE_SIZE = 32  # cell lines; an entry is a small table (metrics x perturbations)


def fingerprint(preds: Sequence[np.ndarray], reals: Sequence[np.ndarray], ctrl: np.ndarray,
                perts: Sequence[str], genes: Sequence[str]) -> str:
    """A digest of everything the evaluation depends on (values, shapes, names)."""
    h = hashlib.blake2b(digest_size=16)
    for a in [*preds, *reals, ctrl]:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a)
    h.update("\0".join([*perts, "\1", *genes]).encode())
    return h.hexdigest()


def line_results(preds: Sequence[np.ndarray], reals: Sequence[np.ndarray], ctrl: np.ndarray,
                 perts: Sequence[str], genes: Sequence[str], *, context: str = "",
                 threads: int = 0) -> dict[str, dict[str, float]]:
    """cell-eval metric -> perturbation -> value for one cell line (cached on the inputs)."""
    key = fingerprint(preds, reals, ctrl, perts, genes)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    table = evaluate_line(preds, reals, ctrl, perts, genes, context=context, threads=threads)
    _CACHE[key] = table
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return table


def cell_eval_anndata(blocks: Sequence[np.ndarray], ctrl: np.ndarray, perts: Sequence[str], genes: Sequence[str]):
    """One side of cell-eval's input: the groups' cells labelled by perturbation, then the controls."""
    import anndata as ad
    import pandas as pd

    x = np.concatenate([*(np.asarray(b, dtype=np.float32) for b in blocks), np.asarray(ctrl, dtype=np.float32)])
    labels = np.repeat(np.array([*perts, CONTROL], dtype=object), [*(len(b) for b in blocks), len(ctrl)])
    obs = pd.DataFrame({PERT_COL: pd.Categorical(labels)}, index=pd.Index([str(i) for i in range(len(x))]))
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pd.Index(list(genes))))


def evaluate_line(preds: Sequence[np.ndarray], reals: Sequence[np.ndarray], ctrl: np.ndarray,
                  perts: Sequence[str], genes: Sequence[str], *, context: str = "",
                  threads: int = 0) -> dict[str, dict[str, float]]:
    """Run cell-eval's ``MetricsEvaluator`` on one cell line and return its per-perturbation values."""
    where = f"cell line {context!r}" if context else "this cell line"
    n_features = np.asarray(ctrl).shape[1]
    if len(genes) != n_features:
        raise DataError(f"cell-eval metrics: {len(genes)} gene names for {n_features} expression features; "
                        "they score expression space only (the evaluator's genes space)")
    if CONTROL in perts:
        raise DataError(f"cell-eval metrics: a perturbation in {where} is named {CONTROL!r}, cell-eval's control label")
    real_blocks = [b for b in (*reals, ctrl) if np.size(b)]
    lo, hi = min(float(np.min(b)) for b in real_blocks), max(float(np.max(b)) for b in real_blocks)
    counts = not any(np.any(np.modf(b)[0] > 1e-3) for b in real_blocks)  # cell-eval would renormalise them
    if lo < 0 or hi >= 15 or counts:
        raise DataError(
            f"cell-eval metrics: the real cells of {where} have {'integer ' if counts else ''}values in "
            f"[{lo:.3g}, {hi:.3g}]; cell-eval needs log1p-normalised expression in [0, 15) (point data.embed_key "
            "at log-normalised values, or leave the celleval: metrics out)")
    clipped = [np.clip(np.asarray(p, dtype=np.float32), 0.0, CLIP_MAX) for p in preds]
    pred_ad = cell_eval_anndata(clipped, ctrl, perts, genes)
    real_ad = cell_eval_anndata(reals, ctrl, perts, genes)

    from cell_eval import MetricsEvaluator
    from cell_eval.metrics import metrics_registry

    skip = [m for m in metrics_registry.list_metrics() if m not in COMPUTED]
    # cell-eval reports progress bars and log lines on stderr and writes DE tables to its outdir
    with tempfile.TemporaryDirectory(prefix="ptrag-celleval-") as tmp, contextlib.redirect_stderr(io.StringIO()):
        try:
            evaluator = MetricsEvaluator(pred_ad, real_ad, control_pert=CONTROL, pert_col=PERT_COL,
                                         num_threads=threads or -1, outdir=os.path.join(tmp, "out"))
            results, _ = evaluator.compute(profile="full", skip_metrics=skip, write_csv=False, break_on_error=True)
        except Exception as exc:  # one line for the user, not a traceback from inside cell-eval
            first = (str(exc).strip().splitlines() or [""])[0]
            raise DataError(f"cell-eval could not score {where}: {type(exc).__name__}: {first}") from exc
    frame = results.to_pandas().set_index("perturbation")
    return {m: {str(p): float(v) for p, v in frame[m].items() if v is not None and not np.isnan(v)}
            for m in COMPUTED if m in frame}


# --------------------------------------------------------------------------- hook


def _spec(name: str, summary: str) -> MetricSpec:
    base = name.removeprefix(PREFIX)
    offered = OFFERED[base]

    def factory(params: CellEvalParams, ctx: BuildContext | None) -> CellEvalMetric:
        n = getattr(params, "n", None)
        metric = base.replace("_N", f"_{n}") if n else base
        return CellEvalMetric(metric, offered.direction, ctx.gene_names if ctx else (), params.threads)

    return MetricSpec(name, factory, CellEvalTopNParams if offered.takes_n else CellEvalParams, summary)


@hookimpl
def ptrag_metrics() -> list[MetricSpec]:
    return [_spec(entry.name, entry.summary) for entry in builtin_entries("metric", __name__)]
