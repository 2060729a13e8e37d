"""The presets and the simple baselines on real measured cells: leave-one-line-out few-shot splits.

    python benchmarks/real_data.py --data perturbench_devel.h5ad [--out DIR] [--seeds 0 1 2]
                                   [--lines A172 T98G U87MG] [--presets ...] [--set KEY=VALUE ...]

Made for the perturbench development subset (Norman 2019 K562 CRISPRa, single and paired targets;
McFaline-Figueroa 2024 glioblastoma lines A172, T98G, U87MG CRISPRi), which a user obtains from the
perturbench repository (not shipped with ptrag). For each target line and seed, a random few-shot
split holds out part of that line's perturbations (``--test-fraction``, ``--val-fraction``); every
other line trains. Then, through ptrag's own commands:

- ``ptrag ablate`` runs every preset on every (line, seed) into ``OUT/<preset>@<line>-s<seed>``;
  finished runs are skipped, so an interrupted benchmark continues; ``state`` is the stack's member,
  trained once inside each ``ptrag-stack`` run and reported beside the others;
- the modality is declared (``data.modality_col=perturbation_type``): K562's activation responses
  are never pooled as evidence for an interference line (``gene-other-lines-pooled`` shows what
  pooling them does); pairs ``A+B`` are left out with one note (ptrag predicts single genes);
- expression is the file's ``X`` (log1p of counts per 10k), ``data.embed_key=X``;
- the table: per preset, mean energy and pearson-delta over every (line, seed, perturbation), and
  paired Wilcoxon tests against ``gene-other-lines`` and ``pert-mean`` (``--baselines``) over those
  pairs, with how many perturbations each test rests on (``ptrag report OUT/*@* --against
  gene-other-lines`` gives it per setting).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import wilcoxon

PRESETS = ["gene-other-lines", "neighbour-mean", "linear", "pert-mean", "ptrag-evidence", "ptrag-stack", "ptrag"]
MEMBERS = ("state",)  # trained inside each ptrag-stack run (its compare/ folder), reported as runs of their own
HEADLINE = {"energy": "lower", "pearson-delta": "higher"}


def grid(args: argparse.Namespace) -> dict:
    runs = [*args.presets, {"name": "gene-other-lines-pooled", "preset": "gene-other-lines",
                            "set": ["data.modality_col=null"]}]
    return {"base": {"data": {"path": str(Path(args.data).resolve()), "embed_key": "X",
                              "modality_col": "perturbation_type", "batch_col": None,
                              "test_fraction": args.test_fraction, "val_fraction": args.val_fraction},
                     "compare": []},
            "seeds": args.seeds, "settings": {"data.holdout_context": args.lines}, "runs": runs}


def per_perturbation(out: Path) -> pd.DataFrame:
    """Every finished run's per-perturbation headline scores: run, line, seed, pert, metric, value."""
    frames = []
    members = [(m, f / "compare" / m) for f in sorted(out.glob("ptrag-stack@*-s*")) for m in MEMBERS]
    for name, folder in [(f.name.partition("@")[0], f) for f in sorted(out.glob("*@*-s*"))] + members:
        metrics = folder / "metrics.csv"
        if not metrics.is_file():
            continue
        top = folder if folder.parent.name != "compare" else folder.parent.parent
        line, _, seed = top.name.partition("@")[2].rpartition("-s")
        table = pd.read_csv(metrics)
        table = table[table.metric.isin(HEADLINE)]
        frames.append(table.assign(run=name, line=line, seed=int(seed)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summary(long: pd.DataFrame, baseline: str = "gene-other-lines") -> pd.DataFrame:
    rows = []
    key = ["line", "seed", "pert", "metric"]
    base = long[long.run == baseline].set_index(key).value
    for run, g in long.groupby("run", sort=False):
        row = {"run": run}
        for metric, direction in HEADLINE.items():
            mine = g[g.metric == metric].set_index(key).value
            paired = pd.concat([mine, base], axis=1, join="inner", keys=["a", "b"]).dropna()
            diff = paired.a - paired.b
            sign = -1 if direction == "lower" else 1
            p = float(wilcoxon(diff).pvalue) if len(diff) and np.any(diff != 0) else 1.0
            row.update({f"{metric}": mine.mean(), f"{metric} n": len(paired),
                        f"{metric} better in": float((sign * diff > 0).mean()) if len(diff) else np.nan,
                        f"{metric} p": p})
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="perturbench_devel.h5ad (or a screen of the same layout)")
    parser.add_argument("--out", type=Path, default=Path("runs/real-data"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lines", nargs="+", default=["A172", "T98G", "U87MG"])
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--test-fraction", type=float, default=0.56)
    parser.add_argument("--val-fraction", type=float, default=0.22)
    parser.add_argument("--set", action="append", default=[], dest="sets", help="passed to ptrag ablate")
    parser.add_argument("--baselines", nargs="+", default=["gene-other-lines", "pert-mean"],
                        help="each run is tested against each of these, paired over (line, seed, perturbation)")
    args = parser.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"--data {args.data}: not found; the perturbench development subset comes from the perturbench "
                 "repository (src/perturbench/data/resources/devel.h5ad), reshaped as its README describes")
    args.out.mkdir(parents=True, exist_ok=True)
    spec = args.out.parent / f"{args.out.name}-grid.yaml"
    spec.write_text(yaml.safe_dump(grid(args), sort_keys=False))
    command = ["ptrag", "ablate", str(spec), "--out", str(args.out), *sum((["--set", s] for s in args.sets), [])]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    long = per_perturbation(args.out)
    for baseline in args.baselines:
        table = summary(long, baseline)
        table.to_csv(args.out / f"real_data_vs_{baseline}.csv", index=False)
        print(f"paired against {baseline}:")
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format",
                               "{:.4g}".format):
            print(table.to_string(index=False))
    print(json.dumps({"runs": int(long.groupby(["run", "line", "seed"]).ngroups),
                      "perturbations per preset": int(long[long.metric == "energy"].groupby("run").size().max())}))


if __name__ == "__main__":
    main()
