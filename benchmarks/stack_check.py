"""The stack beside the blend computed by hand from the same run's saved member predictions.

    python benchmarks/stack_check.py DIR [DIR ...]        # stack run folders, or grid folders holding them

For every finished ``ptrag-stack`` run (a folder, or each ``ptrag-stack*`` run inside a grid
folder), prints one row: the fitted weight of each partner and what the selection rule kept; the
test scores (energy, pearson-delta) of the backbone, of each partner, of the stack as written;
and of the blend recomputed by hand at the FITTED weight from the members' ``predictions.h5ad``
(``backbone cells + w x (partner's group mean - backbone's group mean)``, no floor at 0, scored
with the run's own metric code), so any difference between what the stack writes and its formula
is visible. Where the rule kept the start the stack equals the backbone, and the hand blend shows
what the fitted weight would have scored on test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import yaml

from ptrag.core.components.assembly import build_metrics
from ptrag.core.components.manager import build_manager
from ptrag.core.config import ComponentChoice
from ptrag.core.evaluation.scoring import GroupPrediction, score
from ptrag.core.hookspecs import BuildContext

HEADLINE = ("energy", "pearson-delta")


def stack_runs(paths: list[Path]) -> list[Path]:
    out = []
    for path in paths:
        candidates = [path] if (path / "metrics.json").is_file() else sorted(path.glob("ptrag-stack*"))
        out += [p for p in candidates if (p / "calibration.csv").is_file() or _is_stack(p)]
    return out


def _is_stack(folder: Path) -> bool:
    run = _run(folder)
    return (run.get("components") or {}).get("generator") == "stack"


def _run(folder: Path) -> dict:
    try:
        return json.loads((folder / "metrics.json").read_text())["run"]
    except (OSError, KeyError, ValueError):
        return {}


def _groups(path: Path, pert_col: str, context_col: str, control: str) -> dict[tuple[str, str], np.ndarray]:
    a = ad.read_h5ad(path)
    x = np.asarray(a.X.toarray() if hasattr(a.X, "toarray") else a.X, dtype=np.float64)
    keys = pd.MultiIndex.from_arrays([a.obs[pert_col].astype(str), a.obs[context_col].astype(str)])
    rows = pd.Series(np.arange(len(keys)), index=keys).groupby(level=[0, 1]).indices
    out = {g: x[idx] for g, idx in rows.items() if g[0] != control}
    out.update({("__control__", g[1]): x[idx] for g, idx in rows.items() if g[0] == control})
    return out


def _mean(long: pd.DataFrame, metric: str) -> float:
    return float(long.loc[long.metric == metric, "value"].mean())


def check(folder: Path, metrics: dict) -> dict:
    run = _run(folder)
    training = run.get("training") or {}
    weights = (training.get("calibration") or {}).get("weights") or {}
    kept = (training.get("selection") or {}).get("kept", "-")
    members = run.get("members") or []
    backbone, partners = members[0], members[1:]
    data = (yaml.safe_load((folder / "config.yaml").read_text()) or {}).get("data") or {}
    cols = (data.get("pert_col", "gene"), data.get("context_col", "cell_line"),
            data.get("control_label", "non-targeting"))
    compare = folder / "compare" if (folder / "compare").is_dir() else folder.parent.parent / "compare"
    cells = {m: _groups(compare / m / "predictions.h5ad", *cols) for m in members}
    real = _groups(folder / "real.h5ad", *cols)
    preds = []
    for group, b in cells[backbone].items():
        if group[0] == "__control__":
            continue
        target = b.mean(0) + sum(weights.get(p, 0.0) * (cells[p][group].mean(0) - b.mean(0)) for p in partners)
        preds.append(GroupPrediction(group[0], group[1], b + (target - b.mean(0)), real[group],
                                     real[("__control__", group[1])]))
    hand = score(preds, metrics)
    row = {"run": folder.name, "kept": kept, **{f"w {p}": weights.get(p, float("nan")) for p in partners}}
    for m in HEADLINE:
        for who, where in ((backbone, compare / backbone), *((p, compare / p) for p in partners), ("stack", folder)):
            long = pd.read_csv(where / "metrics.csv")
            row[f"{who} {m}"] = _mean(long, m)
        row[f"hand@w {m}"] = _mean(hand, m)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--csv", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    runs = stack_runs(args.paths)
    if not runs:
        sys.exit("no finished ptrag-stack run found under " + ", ".join(map(str, args.paths)))
    manager = build_manager()
    rows = []
    for folder in runs:
        features = list(ad.read_h5ad(folder / "real.h5ad", backed="r").var_names)
        ctx = BuildContext(n_genes=len(features), gene_names=tuple(features))
        metrics = build_metrics([ComponentChoice(name=n) for n in HEADLINE], manager, ctx)
        rows.append(check(folder, metrics))
    table = pd.DataFrame(rows)
    if args.csv:
        table.to_csv(args.csv, index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
