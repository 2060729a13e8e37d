"""Audit of the built-in screen: does it have the structure that makes real screens what they are?

    python benchmarks/synth_structure.py                       # demo, data seed 0, baselines on
    python benchmarks/synth_structure.py --preset screen --data-seed 1 --split-seed 2
    python benchmarks/synth_structure.py --preset tiny --no-baselines

Prints, for one preset and data seed (docs/data.md quotes these figures):

1. how the same gene's observed pseudobulk response correlates across cell lines, compared with
   different genes of one module and with unrelated genes (raw, and after removing each line's
   mean response, which is what the generic knock-down response inflates);
2. null perturbations: the share whose true effect is ~0, and the share whose observed response
   is within control noise;
3. escaper cells: the share of perturbed cells without knock-down (ground truth);
4. cell states: each line's control mix, and how much knock-downs change the mix of their
   non-escaper cells (total variation distance from the control mix);
5. for context, pearson-delta and energy of the training-free baselines on the default random
   few-shot split (held-out line and perturbations as `ptrag run` picks them), bracketed by
   `control` (no effect) and an oracle that shifts the control cells by the group's own
   observed mean response (what no mean-shift predictor can beat: the rest is cell-level shape).

Observed responses are the retrieval database's (batch-matched pseudobulk, `ResponseDatabase`).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np

BASELINES = ("gene-other-lines", "neighbour-mean", "linear", "pert-mean", "control")


def responses(data):
    """Observed pseudobulk response and the noise floor (expected norm of a null group's
    response) per (gene, cell line) group."""
    from ptrag.core.data.database import ResponseDatabase

    db = ResponseDatabase.from_data(data, data.groups, np.zeros((len(data.groups), 1), np.float32))
    ctrl_var = {c: data.X[data.control_indices(c)].var(axis=0).sum() for c in data.contexts}
    n_ctrl = {c: len(data.control_indices(c)) for c in data.contexts}
    resp, floor = {}, {}
    for (p, c), r, n in zip(data.groups, db.response, db.n_cells, strict=False):
        resp[(p, c)] = r
        floor[(p, c)] = float(np.sqrt(ctrl_var[c] / n + ctrl_var[c] / n_ctrl[c]))
    return resp, floor


def pair_correlations(resp: dict, module: dict, null: set, lines: list[str]) -> dict[str, list[float]]:
    """Pearson r between observed responses, by how the two groups are related."""
    line_mean = {c: np.mean([r for (p, cc), r in resp.items() if cc == c and p not in null], axis=0) for c in lines}
    out: dict[str, list[float]] = {}

    def add(kind, a, b):
        for suffix, (x, y) in (("", (resp[a], resp[b])),
                               (" (minus line mean)", (resp[a] - line_mean[a[1]], resp[b] - line_mean[b[1]]))):
            out.setdefault(kind + suffix, []).append(float(np.corrcoef(x, y)[0, 1]))

    keys = sorted(resp)
    by_gene: dict[str, list] = {}
    for k in keys:
        by_gene.setdefault(k[0], []).append(k)
    for gene, groups in by_gene.items():
        for a, b in combinations(groups, 2):
            add("same gene, other line" if gene not in null else "null gene, other line", a, b)
    effective = [k for k in keys if k[0] not in null]
    rng = np.random.default_rng(0)
    for a, b in combinations(effective, 2):
        if a[0] == b[0]:
            continue
        if module[a[0]] == module[b[0]]:
            add("same module, same line" if a[1] == b[1] else "same module, other line", a, b)
        elif a[1] == b[1] and rng.random() < 0.1:  # unrelated pairs are many: a 10% sample
            add("other module, same line", a, b)
    return out


def true_correlation(truth: dict, null: set) -> float:
    """Mean cross-line correlation of the same gene's *true* direct effect (effective genes, in
    the lines where the gene acts)."""
    effect = dict(zip(truth["effect_groups"], np.asarray(truth["effect"]), strict=False))
    rs = []
    for gene in {k.split("|")[0] for k in effect} - null:
        rows = [effect[f"{gene}|{c}"] for c in truth["cell_lines"]]
        rows = [r for r in rows if np.abs(r).sum() > 0 and r.std() > 0]
        rs += [float(np.corrcoef(a, b)[0, 1]) for a, b in combinations(rows, 2)]
    return float(np.mean(rs)) if rs else float("nan")


def expected_mix(log_mix: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Expected state mix of knocked-down cells: the per-cell magnitude Gamma(6, 1/6) scales the
    log-odds shift (averaged over its quantiles)."""
    from scipy.stats import gamma

    mags = gamma(6.0, scale=1.0 / 6.0).ppf((np.arange(64) + 0.5) / 64)
    logits = log_mix[None, :] + mags[:, None] * shift[None, :]
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (prob / prob.sum(axis=1, keepdims=True)).mean(axis=0)


def state_report(adata, truth: dict) -> None:
    if "cell_state" not in truth:
        print("4. cell states: not modelled by this generator version (no uns['ptrag_synth']['cell_state'])")
        return
    names = list(truth["state_names"])
    K = len(names)
    state = np.asarray(truth["cell_state"])
    escaped = np.asarray(truth["escaped"]).astype(bool)
    gene = adata.obs["gene"].astype(str).to_numpy()
    line = adata.obs["cell_line"].astype(str).to_numpy()
    control = gene == truth["control_label"]
    lines = list(truth["cell_lines"])
    true_mix = dict(zip(lines, np.asarray(truth["control_state_mix"]), strict=False))

    def mix(cells):
        return np.bincount(state[cells], minlength=K) / max(1, cells.sum())

    def tv(a, b):
        return 0.5 * float(np.abs(a - b).sum())

    print(f"4. cell states ({', '.join(names)}): control mix per line (observed); pooled escaper cells vs it")
    for c in lines:
        ctrl = mix(control & (line == c))
        print(f"   {c:8s} " + "  ".join(f"{n} {v:.2f}" for n, v in zip(names, ctrl, strict=False))
              + f"   escapers: TV {tv(mix(escaped & (line == c)), true_mix[c]):.3f} from the true mix "
              f"({(escaped & (line == c)).sum()} cells; controls {tv(ctrl, true_mix[c]):.3f})")
    shift = dict(zip(truth["effect_groups"], np.asarray(truth["state_shift"]), strict=False))
    observed = {(p, c) for p, c in zip(gene[~control], line[~control], strict=False)}
    expected, seen = {}, {}
    for p, c in observed:
        expected[(p, c)] = tv(expected_mix(np.log(true_mix[c]), shift[f"{p}|{c}"]), true_mix[c])
        hit = (gene == p) & (line == c) & ~escaped
        seen[(p, c)] = tv(mix(hit), mix(control & (line == c)))
    e = np.array(list(expected.values()))
    moving = [k for k, v in expected.items() if v > 0.05]
    still = [k for k, v in expected.items() if v < 1e-6]
    print(f"   expected shift of knocked-down cells' mix (TV from the control mix): {len(moving)} of {len(e)} "
          f"groups ({len(moving) / len(e):.0%}) above 0.05; among them median {np.median(e[e > 0.05]):.3f}, "
          f"90th pct {np.percentile(e[e > 0.05], 90):.3f}")
    print(f"   observed TV of non-escaper cells: groups above 0.05 median {np.median([seen[k] for k in moving]):.3f}, "
          f"groups without a shift median {np.median([seen[k] for k in still]):.3f} (sampling noise)")
    by_gene: dict[str, list[float]] = {}
    for (p, c) in moving:
        by_gene.setdefault(p, []).append(float(np.abs(shift[f"{p}|{c}"]).sum()))
    cv = [np.std(v) / np.mean(v) for v in by_gene.values() if len(v) > 1]
    print(f"   the same gene's shift across lines: size varies with median CV {np.median(cv):.2f} over {len(cv)} genes "
          f"(shared, not identical)")


def oracle_mean_shift(data, seed: int) -> dict[str, float]:
    """Control cells plus each held-out group's *own* observed mean response: the best any
    mean-shift predictor can do, so its energy is what cell-level shape (states, escapers,
    per-cell magnitude) adds on top of the mean."""
    from ptrag.core.config import DataConfig
    from ptrag.core.data.split import resolve_split
    from ptrag.core.evaluation.aggregate import sample_controls
    from ptrag.core.evaluation.scoring import GroupPrediction, score
    from ptrag.plugins.metrics.distributional import Energy
    from ptrag.plugins.metrics.expression import PearsonDelta

    split = resolve_split(DataConfig(), data, seed)
    rng = np.random.default_rng([seed, 2])
    preds = []
    for p, c in split.test:
        real = data.X[data.group_indices(p, c)]
        ctrl = data.X[data.control_indices(c)]
        matched = data.X[sample_controls(data, c, len(real), rng)]
        preds.append(GroupPrediction(p, c, matched + (real.mean(0) - ctrl.mean(0)), real, ctrl))
    table = score(preds, {"pearson-delta": PearsonDelta(), "energy": Energy()})
    return table.groupby("metric")["value"].mean().to_dict()


def baselines(path: str, seed: int, presets: tuple[str, ...], oracle: dict[str, float]) -> None:
    from ptrag.core.components.manager import build_manager
    from ptrag.core.config import resolve_config
    from ptrag.core.runs.experiment import run_experiment

    manager = build_manager()
    print(f"5. baselines on the default few-shot split (run seed {seed}; mean over held-out perturbations)")
    print(f"   {'preset':26s} {'pearson-delta':>14s} {'energy':>8s} {'gap closed':>10s} {'seconds':>8s}")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in presets:
            extra = {"data": {"path": path}, "seed": seed, "device": "cpu", "compare": [],
                     "metrics": [{"name": "pearson-delta"}, {"name": "energy"}],
                     "output": {"dir": str(Path(tmp) / name)}}
            cfg = resolve_config(None, preset=name, extra=extra, manager=manager)
            t = time.perf_counter()
            result = run_experiment(cfg, manager)
            rows[name] = (result.summary["pearson-delta"]["mean"], result.summary["energy"]["mean"],
                          time.perf_counter() - t)
        rows["(oracle: own mean shift)"] = (oracle["pearson-delta"], oracle["energy"], float("nan"))
        none, best = rows["control"][1], oracle["energy"]
        for name, (r, e, seconds) in rows.items():  # gap: the share of control -> oracle energy closed
            print(f"   {name:26s} {r:14.3f} {e:8.3f} {(none - e) / (none - best):10.0%} {seconds:8.1f}")
        print(f"   split: {json.loads((result.run_dir / 'metrics.json').read_text())['run']['split']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the generator (data.seed)")
    ap.add_argument("--split-seed", type=int, default=0, help="run seed: draws the held-out perturbations")
    ap.add_argument("--no-baselines", action="store_true")
    args = ap.parse_args()
    logging.getLogger("ptrag.data").setLevel(logging.ERROR)

    from ptrag.core.config import DataConfig
    from ptrag.core.data.loading import adata_to_data
    from ptrag.core.data.synth import synth_screen

    t = time.perf_counter()
    adata = synth_screen(args.preset, args.data_seed)
    made = time.perf_counter() - t
    truth = adata.uns["ptrag_synth"]
    data = adata_to_data(adata, DataConfig(), f"built-in {args.preset}")
    print(f"preset {args.preset}, data seed {args.data_seed}, generator version {truth['version']}: "
          f"{adata.n_obs:,} cells x {adata.obsm['X_hvg'].shape[1]:,} genes, {len(data.perturbations)} perturbed "
          f"genes, {len(data.groups)} groups, {len(data.contexts)} lines; generated in {made:.1f} s")

    module = truth["gene_module"]
    null = set(truth["null_genes"])
    resp, floor = responses(data)
    corr = pair_correlations(resp, module, null, data.contexts)
    print("1. correlation of observed pseudobulk responses (mean Pearson r, pairs)")
    for kind in ("same gene, other line", "same module, other line", "same module, same line",
                 "other module, same line", "null gene, other line"):
        for suffix in ("", " (minus line mean)") if "null" not in kind else ("",):
            rs = corr.get(kind + suffix, [])
            if rs:
                print(f"   {kind + suffix:45s} {np.mean(rs):6.3f}  ({len(rs)})")
    print(f"   true direct effect, same gene across lines (effective genes): {true_correlation(truth, null):.3f}")

    perts = data.perturbations
    n_null = sum(p in null for p in perts)
    ratio = {k: float(np.linalg.norm(r) / floor[k]) for k, r in resp.items()}
    quiet = np.mean([v < 1.5 for v in ratio.values()])
    null_groups = np.mean([k[0] in null for k in resp])
    print(f"2. null perturbations: {n_null} of {len(perts)} genes ({n_null / len(perts):.0%}) have no true effect "
          f"({len(set(truth['weak_module_genes']) - {'<none>'})} of them weak complex members); "
          f"{null_groups:.0%} of groups")
    print(f"   groups whose observed response is within 1.5x control noise: {quiet:.0%} "
          f"(null groups {np.median([ratio[k] for k in resp if k[0] in null]):.2f}x the noise floor, "
          f"effective groups {np.median([ratio[k] for k in resp if k[0] not in null]):.2f}x; medians)")

    if "escaped" in truth:
        escaped = np.asarray(truth["escaped"]).astype(bool)
        perturbed = adata.obs["gene"].astype(str).to_numpy() != truth["control_label"]
        print(f"3. escaper cells: {escaped[perturbed].mean():.1%} of perturbed cells (per gene and line "
              f"{np.min(truth['escape_rate']):.2f}-{np.max(truth['escape_rate']):.2f})")
    else:
        print("3. escaper cells: not stored by this generator version")
    state_report(adata, truth)

    if not args.no_baselines:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / f"{args.preset}.h5ad")
            adata.write_h5ad(path)
            oracle = oracle_mean_shift(data, args.split_seed)
            del adata, data
            baselines(path, args.split_seed, BASELINES, oracle)


if __name__ == "__main__":
    main()
