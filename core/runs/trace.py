"""The retrieval trace of a run: per held-out query, its candidates and what the selector did.

``retrieval.csv`` has one row per query x candidate: the candidate, its stage-1 score, its
keep-weight (the mean over the query's predicted cells of the keep decisions or weights the
selector applied), the query's predicted cells and the candidate's response similarity to the
query's real response; ``retrieval_summary.json`` summarises it per cell line:

- ``keep_ratio``: the mean over (cell, candidate) of the keep decisions the predictions used;
- ``selection_auc``: do kept candidates resemble the query's real response more than dropped
  ones? The probability that a kept candidate of a query is more similar than a dropped one of the
  same query (pairs weighted by keep-weight and 1 - keep-weight; 0.5 is chance, 1 a perfect
  selector; null when nothing or everything was kept);
- which candidates are kept most often, and how often kept ones share the query's module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.gene_modules import module_of
from ..data.gene_sets import GeneSets
from ..errors import DataError
from ..files import write_csv, write_json

TRACE_COLUMNS = ["pert", "context", "rank", "candidate_pert", "candidate_context", "stage1_score", "keep_weight"]
KEEP_THRESHOLD = 0.5  # a candidate counts as kept when its keep-weight exceeds this


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


def keep_ratio(trace: pd.DataFrame) -> float:
    """The mean over (cell, candidate) of the keep decisions applied: keep-weights weighted by
    the query's predicted cells (equally without an ``n_cells`` column); NaN without keep-weights."""
    weights = trace["keep_weight"].astype(float)
    cells = trace["n_cells"].astype(float) if "n_cells" in trace else pd.Series(1.0, index=trace.index)
    ok = weights.notna()
    return float((weights[ok] * cells[ok]).sum() / cells[ok].sum()) if ok.any() else float("nan")


def selection_auc(trace: pd.DataFrame) -> float:
    """Weighted Mann-Whitney AUC of response similarity, kept vs dropped, within each query."""
    if "response_similarity" not in trace:
        return float("nan")
    num = den = 0.0
    for _, g in trace.groupby(["pert", "context"], sort=False):
        w = g["keep_weight"].to_numpy(float)
        sim = g["response_similarity"].to_numpy(float)
        if not np.isfinite(w).all():
            return float("nan")
        pair = w[:, None] * (1 - w[None, :])  # candidate i kept, j dropped
        better = (sim[:, None] > sim[None, :]) + 0.5 * (sim[:, None] == sim[None, :])
        np.fill_diagonal(pair, 0.0)
        num, den = num + float((pair * better).sum()), den + float(pair.sum())
    return num / den if den > 0 else float("nan")


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
        pairs = zip(t["pert"].astype(str), t["candidate_pert"].astype(str), strict=False)
        shares = pd.Series([bool(gene_sets.shared(a, b)) for a, b in pairs], index=t.index)
    out: dict[str, Any] = {}
    for context, g in t.groupby("context", sort=True):
        kept = g[g.kept]
        annotated = g[qm.loc[g.index].notna()]
        kept_annotated = annotated[annotated.kept]
        weight = g["keep_weight"].astype(float)
        out[str(context)] = entry = {
            "queries": int(g["pert"].nunique()),
            "candidates": int(len(g)),
            "keep_ratio": keep_ratio(g) if len(g) else float("nan"),
            "selection_auc": selection_auc(g),
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
                                     zip(table["pert"].astype(str), table["candidate_pert"].astype(str), strict=False)]
    write_csv(run_dir / "retrieval.csv", table)
    summary = retrieval_summary(trace, module, gene_sets)
    write_json(run_dir / "retrieval_summary.json", summary)  # rates without data are null, not NaN
    return summary
