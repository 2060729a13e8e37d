"""ptrag's metrics vs Arc Institute's cell-eval (the `celleval:` plugin) on the same predictions; prints figures.

Runs baseline presets (no training) on the built-in data, each scored with both metric sets in one
pass, and prints per pair of metrics: the mean over held-out perturbations of each, their difference,
and the Pearson correlation across perturbations. The column `ptrag, cell-eval's way` recomputes the
ptrag value with cell-eval's conventions from the run's predictions.h5ad / real.h5ad (predictions
clipped to [0, 15); for discrimination also cell-eval's 1 - rank/N and the target gene left out), and
`max |left over|` is the largest per-perturbation gap between that and cell-eval's value: what no
convention explains. DE metrics have no such
column: their gene sets differ by definition (docs/metrics.md, "ptrag vs cell-eval").
Needs `pip install "ptrag[celleval]"`.

    python benchmarks/celleval_agreement.py [--presets pert-mean gene-other-lines] [--data demo] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.runs.experiment import run_experiment

PAIRS = [  # (ptrag label, cell-eval label)
    ("pearson-delta", "celleval:pearson_delta"),
    ("mse", "celleval:mse"),
    ("de-overlap@20", "celleval:overlap_at_N"),
    ("de-direction@20", "celleval:de_direction_match"),
    ("discrimination", "celleval:discrimination_score_l1"),
]
METRICS = ["pearson-delta", "mse", "de-overlap", "de-direction", "discrimination",
           *(ce for _, ce in PAIRS), "celleval:precision_at_N", "celleval:de_sig_genes_recall"]


def groups_from_files(run_dir: Path) -> tuple[np.ndarray, dict[str, dict[str, tuple[np.ndarray, ...]]]]:
    """Gene names and cell line -> perturbation -> (clipped predicted, real, control cells), from the
    run's predictions.h5ad / real.h5ad."""
    import anndata as ad

    pred, real = ad.read_h5ad(run_dir / "predictions.h5ad"), ad.read_h5ad(run_dir / "real.h5ad")
    cfg = resolve_config(run_dir / "config.yaml").data
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for line in real.obs[cfg.context_col].unique():
        p_line, r_line = pred[pred.obs[cfg.context_col] == line], real[real.obs[cfg.context_col] == line]
        r_pert = r_line.obs[cfg.pert_col].astype(str).to_numpy()
        p_pert = p_line.obs[cfg.pert_col].astype(str).to_numpy()
        ctrl = np.asarray(r_line.X[r_pert == cfg.control_label])
        out[str(line)] = {pert: (np.asarray(p_line.X[p_pert == pert]), np.asarray(r_line.X[r_pert == pert]), ctrl)
                          for pert in np.unique(r_pert) if pert != cfg.control_label}
    return np.asarray(real.var_names.astype(str)), out


def ptrag_the_cell_eval_way(run_dir: Path) -> pd.DataFrame:
    """ptrag's pearson-delta, mse and discrimination on the clipped predictions; discrimination also
    step by step towards cell-eval's: as 1 - rank/N, then with the target gene left out."""
    from ptrag.plugins.metrics.discrimination import Discrimination
    from ptrag.plugins.metrics.expression import MeanSquaredError, PearsonDelta

    genes, by_line = groups_from_files(run_dir)
    rows = []
    for line, groups in by_line.items():
        perts = list(groups)
        ctrl = next(iter(groups.values()))[2]
        pred_delta = np.stack([groups[p][0].mean(axis=0) - ctrl.mean(axis=0) for p in perts])
        real_delta = np.stack([groups[p][1].mean(axis=0) - ctrl.mean(axis=0) for p in perts])
        clipped = Discrimination().compute_set([groups[p][0] for p in perts], [groups[p][1] for p in perts], ctrl)
        for i, pert in enumerate(perts):
            pred, real, _ = groups[pert]
            ranks = []
            for keep in (np.ones(len(genes), bool), genes != pert):
                dist = np.abs(real_delta[:, keep] - pred_delta[i, keep]).sum(axis=1)
                ranks.append(int(np.flatnonzero(np.argsort(dist) == i)[0]))
            rows += [(pert, line, "pearson-delta", PearsonDelta().compute(pred, real, ctrl)),
                     (pert, line, "mse", MeanSquaredError().compute(pred, real, ctrl)),
                     (pert, line, "discrimination:clipped", clipped[i]),
                     (pert, line, "discrimination:clipped, 1-rank/N", 1 - ranks[0] / len(perts)),
                     (pert, line, "discrimination", 1 - ranks[1] / len(perts))]
    return pd.DataFrame(rows, columns=["pert", "context", "metric", "value"])


def de_gene_counts(run_dir: Path) -> tuple[float, float]:
    """Mean number of significant DE genes per perturbation (FDR < 0.05) in cell-eval's DE of the
    real and of the predicted cells: the real one is overlap_at_N's N (ptrag's de-overlap uses 20)."""
    import anndata as ad
    import polars as pl
    from cell_eval import MetricsEvaluator

    cfg = resolve_config(run_dir / "config.yaml").data
    pred, real = ad.read_h5ad(run_dir / "predictions.h5ad"), ad.read_h5ad(run_dir / "real.h5ad")
    counts: dict[str, list[int]] = {"real": [], "pred": []}
    with tempfile.TemporaryDirectory() as tmp:
        for line in real.obs[cfg.context_col].unique():
            de = MetricsEvaluator(pred[pred.obs[cfg.context_col] == line].copy(),
                                  real[real.obs[cfg.context_col] == line].copy(), control_pert=cfg.control_label,
                                  pert_col=cfg.pert_col, outdir=str(Path(tmp) / "out")).de_comparison
            for side, table in (("real", de.real), ("pred", de.pred)):
                sig = table.data.group_by("target").agg((pl.col("fdr") < 0.05).sum().alias("n"))
                counts[side] += sig["n"].to_list()
    return float(np.mean(counts["real"])), float(np.mean(counts["pred"]))


def agreement(long: pd.DataFrame, converted: pd.DataFrame) -> pd.DataFrame:
    wide = long.pivot_table(index=["pert", "context"], columns="metric", values="value")
    conv = converted.pivot_table(index=["pert", "context"], columns="metric", values="value")
    rows = []
    for ours, theirs in PAIRS:
        both = wide[[ours, theirs]].dropna()
        base = ours.split("@")[0]
        residual = (wide[theirs] - conv[base]).abs().max() if base in conv else np.nan
        rows.append({
            "ptrag": ours, "cell-eval": theirs.removeprefix("celleval:"),
            "ptrag mean": wide[ours].mean(), "cell-eval mean": wide[theirs].mean(),
            "difference": wide[theirs].mean() - wide[ours].mean(),
            "r across perts": both[ours].corr(both[theirs]) if len(both) > 2 else np.nan,
            "n": len(both),
            "ptrag, cell-eval's way": conv[base].mean() if base in conv else np.nan,
            "max |left over|": residual,
        })
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["pert-mean", "gene-other-lines"])
    ap.add_argument("--data", default="demo", help="built-in data preset (tiny, demo, large) or an .h5ad path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    args = ap.parse_args()
    manager = build_manager()
    if not any(n.startswith("celleval:") for n in manager.names("metric")):
        raise SystemExit('the celleval: metrics are not installed: pip install "ptrag[celleval]"')
    data = f"data.path={args.data}" if args.data.endswith(".h5ad") else f"data.synth_preset={args.data}"
    pd.set_option("display.width", 200)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        for preset in args.presets:
            run_dir = root / f"{preset}-s{args.seed}"
            config = resolve_config(preset=preset, manager=manager, extra={"seed": args.seed},
                                    sets=[data, "compare=[]", f"metrics=[{', '.join(METRICS)}]",
                                          f"output.dir={run_dir}"])
            start = time.perf_counter()
            result = run_experiment(config, manager, overwrite=True)  # a rerun with --out replaces its own runs
            seconds = time.perf_counter() - start
            converted = ptrag_the_cell_eval_way(run_dir)
            table = agreement(result.metrics, converted)
            extra = result.metrics.groupby("metric").value.mean()
            n_real, n_pred = de_gene_counts(run_dir)
            print(f"\n{preset} (seed {args.seed}, {table.n.max()} held-out perturbations, "
                  f"run + scoring {seconds:.1f} s; "
                  f"cell-eval precision_at_N {extra['celleval:precision_at_N']:.4f}, "
                  f"de_sig_genes_recall {extra['celleval:de_sig_genes_recall']:.4f}; significant DE genes per "
                  f"perturbation, real {n_real:.1f} (overlap_at_N's N; ptrag's de-overlap: 20), "
                  f"predicted {n_pred:.1f})")
            print(table.to_string(index=False,
                                  float_format=lambda v: f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"))
            steps = converted.groupby("metric").value.mean()
            print(f"discrimination, step by step: ptrag {extra['discrimination']:.4f} -> on clipped predictions "
                  f"{steps['discrimination:clipped']:.4f} -> "
                  f"as 1 - rank/N {steps['discrimination:clipped, 1-rank/N']:.4f} "
                  f"-> target gene left out {steps['discrimination']:.4f} (cell-eval "
                  f"{extra['celleval:discrimination_score_l1']:.4f})")


if __name__ == "__main__":
    main()
