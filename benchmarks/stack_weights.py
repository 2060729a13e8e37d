"""Should the stack fit one weight per member, or one per member and gene program? A paired test on validation.

    python benchmarks/stack_weights.py DIR [DIR ...] [--programs 4] [--shrink 4]

Reads the ``calibration.csv`` of every finished ``ptrag-stack`` run under the given folders (run
folders or grid folders): per validation perturbation and gene, the control mean, the real mean
and each member's mean. For each run, leave-one-validation-perturbation-out: both weightings are
fitted on the other validation perturbations (the stack's own ridge, ``shrink`` perturbations'
worth of prior) and predict the left-out perturbation's mean; gene programs are k-means clusters
of the genes' partner-shift profiles over the fitting perturbations. Each left-out perturbation
gets both predictions' pearson-delta (predicted vs real mean change from control) and MSE of the
mean. Prints the paired Wilcoxon test over all left-out perturbations, per simulator family (the
``@<family>-...`` part of a grid run's name) and pooled. Per-line weights are not tested: in a
few-shot split every validation perturbation is in the held-out line, so there is one line.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import yaml
from scipy.cluster.vq import kmeans2
from scipy.stats import wilcoxon


def ridge(shift: np.ndarray, residual: np.ndarray, n_groups: int, shrink: float) -> np.ndarray:
    """The stack's fit: shift [rows, M], residual [rows] -> weights [M]."""
    gram = shift.T @ shift
    penalty = shrink / max(n_groups, 1) * np.diag(np.diag(gram))
    return np.linalg.lstsq(gram + penalty, shift.T @ residual, rcond=None)[0]


def _arrays(table: pd.DataFrame, members: list[str]) -> tuple[list[tuple], np.ndarray, np.ndarray, np.ndarray,
                                                              np.ndarray]:
    """Per group (in order): control [P,G], real [P,G], backbone [P,G], partner shifts [P,G,M]."""
    groups = list(dict.fromkeys(zip(table.pert, table.context, strict=True)))
    n_genes = len(table) // len(groups)
    shape = (len(groups), n_genes)
    col = {c: table[c].to_numpy().reshape(shape) for c in ("control", "real", members[0], *members[1:])}
    shifts = np.stack([col[m] - col[members[0]] for m in members[1:]], axis=-1)
    return groups, col["control"], col["real"], col[members[0]], shifts


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def leave_one_out(table: pd.DataFrame, members: list[str], programs: int, shrink: float, seed: int) -> pd.DataFrame:
    groups, control, real, backbone, shifts = _arrays(table, members)
    rows = []
    for i, group in enumerate(groups):
        fit = [j for j in range(len(groups)) if j != i]
        residual = real[fit] - backbone[fit]
        w_one = ridge(shifts[fit].reshape(-1, shifts.shape[-1]), residual.reshape(-1), len(fit), shrink)
        profile = shifts[fit].transpose(1, 0, 2).reshape(shifts.shape[1], -1)  # gene x (group, partner)
        profile = (profile - profile.mean(0)) / (profile.std(0) + 1e-12)
        _, label = kmeans2(profile, programs, seed=seed, minit="++")
        pred_prog = backbone[i].copy()
        for k in range(programs):
            genes = label == k
            if genes.any():
                w_k = ridge(shifts[fit][:, genes].reshape(-1, shifts.shape[-1]), residual[:, genes].reshape(-1),
                            len(fit), shrink)
                pred_prog[genes] += shifts[i][genes] @ w_k
        pred_one = backbone[i] + shifts[i] @ w_one
        change = real[i] - control[i]
        rows.append({"pert": group[0], "context": group[1],
                     "pearson_one": _pearson(pred_one - control[i], change),
                     "pearson_programs": _pearson(pred_prog - control[i], change),
                     "mse_one": float(((pred_one - real[i]) ** 2).mean()),
                     "mse_programs": float(((pred_prog - real[i]) ** 2).mean())})
    return pd.DataFrame(rows)


def with_control(table: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """The control mean per (line, gene): from the table, or (a table written before it had the
    column) from the run's real.h5ad, which holds the held-out line's control cells."""
    if "control" in table:
        return table
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    data = config.get("data") or {}
    real = ad.read_h5ad(run_dir / "real.h5ad")
    is_ctrl = (real.obs[data.get("pert_col", "gene")].astype(str) == data.get("control_label", "non-targeting"))
    lines = real.obs[data.get("context_col", "cell_line")].astype(str)
    x = np.asarray(real.X.toarray() if hasattr(real.X, "toarray") else real.X, dtype=np.float64)
    names = [str(g) for g in real.var_names]
    means = {line: pd.Series(x[(is_ctrl & (lines == line)).to_numpy()].mean(0), index=names) for line in set(lines)}
    control = [means[c][g] for c, g in zip(table.context.astype(str), table.gene.astype(str), strict=True)]
    return table.assign(control=control)


def _family(name: str) -> str:
    found = re.search(r"@([A-Za-z0-9]+)", name)
    return found.group(1) if found else "-"


def _test(rows: pd.DataFrame) -> str:
    parts = []
    for metric, better in (("pearson", 1), ("mse", -1)):
        one, prog = rows[f"{metric}_one"].to_numpy(), rows[f"{metric}_programs"].to_numpy()
        ok = np.isfinite(one) & np.isfinite(prog)
        diff = better * (prog[ok] - one[ok])
        p = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
        parts.append(f"{metric}: per-member {one[ok].mean():.4g} vs per-program {prog[ok].mean():.4g}, "
                     f"per-program better in {np.mean(diff > 0):.0%}, p {p:.2g}")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--programs", type=int, default=4)
    parser.add_argument("--shrink", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    found = [[path / "calibration.csv"] if (path / "calibration.csv").is_file()
             else path.glob("ptrag-stack*/calibration.csv") for path in args.paths]
    tables = sorted({p for paths in found for p in paths})
    if not tables:
        sys.exit("no calibration.csv under " + ", ".join(map(str, args.paths)))
    results = []
    for path in tables:
        table = with_control(pd.read_csv(path), path.parent)
        members = [c for c in table.columns if c not in ("pert", "context", "gene", "control", "real")]
        if table.groupby(["pert", "context"]).ngroups < 3:
            continue
        rows = leave_one_out(table, members, args.programs, args.shrink, args.seed)
        results.append(rows.assign(run=path.parent.name, family=_family(path.parent.name)))
    pooled = pd.concat(results, ignore_index=True)
    print(f"{len(results)} stack runs, {len(pooled)} left-out validation perturbations, {args.programs} programs, "
          f"shrink {args.shrink:g}")
    for family, rows in pooled.groupby("family"):
        print(f"  {family} ({rows.run.nunique()} runs, {len(rows)} perturbations): {_test(rows)}")
    print(f"  pooled: {_test(pooled)}")


if __name__ == "__main__":
    main()
