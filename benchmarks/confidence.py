"""Does the in-silico confidence rank errors better than the predicted effect size? Measured on held-out groups.

    python benchmarks/confidence.py DIR [DIR ...] [--models gene-other-lines ptrag-evidence ptrag-stack]

DIR: grid folders of ``ptrag ablate`` (runs ``<name>@<setting>-s<seed>``) or single run folders;
each run's ``compare/`` runs count too. For every finished run of the chosen presets, each held-out
(perturbation, line) of its test split is a prediction of a knock-down the model never saw in that
line, exactly what ``ptrag predict --genes`` makes. Per run (one setting, one seed):

- error per perturbation: 1 - pearson-delta (how wrong the predicted profile of change is) and energy;
- the confidence ``ptrag predict --genes`` reports (runs/knockdowns.py ``expected_correlation``)
  and, beside it, the predicted effect size (norm of the predicted mean change);
- Spearman correlation of each with the error, sign turned so that higher = better ranking, over the
  perturbations with a defined confidence (measured in two or more other lines of the modality).

Then, per preset and family of data, the two correlations paired across runs (Wilcoxon
signed-rank over (setting, seed)) and the share of runs where the confidence ranks better.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import spearmanr, wilcoxon

from ptrag.core.components.manager import build_manager
from ptrag.core.data.loading import load_screen
from ptrag.core.runs.knockdowns import cross_line_evidence, expected_correlation, measurement_noise
from ptrag.core.runs.reload import load_run

MODELS = ["gene-other-lines", "ptrag-evidence", "ptrag-stack"]


def run_folders(paths: list[Path], models: list[str]) -> list[tuple[str, str, Path]]:
    """(preset, setting label, folder) of every finished run of ``models`` under ``paths``."""
    found = []
    for path in paths:
        tops = [path] if (path / "metrics.json").is_file() else sorted(p for p in path.glob("*") if p.is_dir())
        for top in tops:
            setting = top.name.partition("@")[2] or top.name
            for folder in [top, *sorted((top / "compare").glob("*"))]:
                name = folder.name.partition("@")[0] if folder is top else folder.name
                if name in models and (folder / "metrics.json").is_file():
                    found.append((name, setting, folder))
    return list({(n, s): (n, s, f) for n, s, f in found}.values())  # a comparison run reused by a grid run once


def _group_means(path: Path, gene_col: str = "gene", line_col: str = "cell_line") -> dict:
    a = ad.read_h5ad(path)
    x = np.asarray(a.X.toarray() if hasattr(a.X, "toarray") else a.X, dtype=np.float64)
    keys = pd.MultiIndex.from_arrays([a.obs[gene_col].astype(str), a.obs[line_col].astype(str)])
    rows = pd.Series(np.arange(len(keys)), index=keys).groupby(level=[0, 1]).indices
    return {g: x[idx].mean(0) for g, idx in rows.items()}


def per_perturbation(folder: Path, manager) -> pd.DataFrame:
    run = load_run(folder, manager, device="cpu")
    control = run.config.data.control_label
    pred = _group_means(folder / "predictions.h5ad", run.config.data.pert_col, run.config.data.context_col)
    screen = load_screen(run.config.data)  # the line's control cells, for the measurement noise
    metrics = pd.read_csv(folder / "metrics.csv")
    wide = metrics[metrics.metric.isin(["pearson-delta", "energy"])].pivot_table(
        index=["pert", "context"], columns="metric", values="value")
    rows = []
    for (gene, line), m in wide.iterrows():
        evidence = cross_line_evidence(run, gene, line)
        noise = measurement_noise(screen, line, len(screen.group_indices(gene, line)))
        effect = float(np.linalg.norm(pred[(gene, line)] - pred[(control, line)]))
        rows.append({"pert": gene, "line": line, "confidence": expected_correlation(evidence, noise),
                     "agreement": evidence.agreement, "other_lines": evidence.lines, "effect": effect,
                     "error_pd": 1 - m["pearson-delta"], "error_energy": m["energy"]})
    return pd.DataFrame(rows)


def rank_quality(table: pd.DataFrame) -> dict:
    ok = table.dropna(subset=["confidence"])
    out = {"n": len(ok), "coverage": len(ok) / max(len(table), 1)}
    for err in ("error_pd", "error_energy"):
        for score in ("confidence", "agreement", "effect"):
            rho = spearmanr(ok[score], ok[err]).statistic if len(ok) > 2 else np.nan
            out[f"{score} | {err}"] = -rho
    return out


def _family(setting: str) -> str:
    found = re.match(r"([A-Za-z]+[0-9]*)-", setting)
    return found.group(1) if found else setting.rpartition("-s")[0] or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--family", default=None, help="one label for every run (e.g. real), instead of the family "
                        "read from grid setting names")
    args = parser.parse_args()
    manager = build_manager()
    rows = []
    for name, setting, folder in run_folders(args.paths, args.models):
        quality = rank_quality(per_perturbation(folder, manager))
        rows.append({"preset": name, "setting": setting, "family": args.family or _family(setting), **quality})
    if not rows:
        sys.exit("no finished run of " + ", ".join(args.models))
    runs = pd.DataFrame(rows)
    for err in ("error_pd", "error_energy"):
        print(f"ranking {err} (Spearman, sign turned: higher ranks errors better)")
        for (preset, family), g in runs.groupby(["preset", "family"]):
            conf, eff = g[f"confidence | {err}"].to_numpy(), g[f"effect | {err}"].to_numpy()
            keep = np.isfinite(conf) & np.isfinite(eff)
            diff = conf[keep] - eff[keep]
            p = float(wilcoxon(diff).pvalue) if len(diff) > 1 and np.any(diff != 0) else float("nan")
            agree = np.nanmean(g[f"agreement | {err}"])
            print(f"  {preset:<18} {family:<8} runs {keep.sum():>2}, perturbations {int(g.n.sum()):>4} "
                  f"(coverage {g.coverage.mean():.0%}): confidence {np.nanmean(conf):+.3f} (agreement alone "
                  f"{agree:+.3f}), effect size {np.nanmean(eff):+.3f}, confidence better in {np.mean(diff > 0):.0%} "
                  f"of runs, p {p:.2g}")


if __name__ == "__main__":
    main()
