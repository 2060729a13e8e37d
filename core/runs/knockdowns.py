"""In-silico knock-downs: a trained run predicts perturbations never measured in a cell line.

Each requested gene becomes a group of ``cells`` predicted cells, each from a control cell of the
line (runs/predict.py: a group with no real cells), through the run's own model, or for an
ensemble through its members (runs/ensemble.py). Per gene: the mean change from the line's
control cells over every feature, the strongest up and down features, and a confidence: the
correlation to expect between the predicted and a measured change, from how alike and how strong
the gene's observed responses are in the other lines the run was trained on
(:func:`expected_correlation`). docs/model.md#in-silico-knock-downs says what it is and how well
it ranks errors on held-out data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.dataset import PerturbationData
from ..data.split import Group
from ..data.validation import looks_like_control, spelling
from ..errors import ConfigError, DataError
from ..evaluation.scoring import GroupPrediction
from .ensemble import GroupMembers, combine_groups
from .reload import LoadedRun, predict_loaded

Log = Callable[[str], None]
TOP = 5  # features named per direction in the effects table


@dataclass
class KnockdownPlan:
    """What will be predicted: the groups, their cell counts and each gene's status in the line
    (never measured, held out of training, or in the run's training data)."""

    groups: list[Group]
    sizes: dict[Group, int]
    status: dict[str, str]  # gene -> in silico | held out | in training


def plan_knockdowns(run: LoadedRun, data: PerturbationData, genes: Sequence[str], line: str,
                    cells: int | None) -> KnockdownPlan:
    """Check the request against the run and the screen holding the line's control cells."""
    wanted = requested_genes(run, data, genes)
    lines = list(run.meta["contexts"])
    if line not in lines:
        raise ConfigError(f"--line {line}: the run was trained on {', '.join(lines)}; predict one of those lines")
    if not len(data.control_indices(line)):
        raise DataError(f"{data.source}: no control cells of line {line} to start the knock-downs from")
    if list(data.features) != list(run.meta["features"]):
        raise DataError(f"{data.source}: its {data.n_features} expression features differ from the run's "
                        f"{len(run.meta['features'])}; give the screen the run was trained on (--data)")
    if cells is not None and cells < 1:
        raise ConfigError(f"--cells {cells}: predict at least one cell per knock-down")
    n = cells or _typical_group_size(data, line)
    if n * len(wanted) * data.n_features > MAX_PREDICTED_VALUES:
        raise ConfigError(f"--cells {n:,} x {len(wanted):,} gene(s) x {data.n_features:,} features is more than the "
                          f"{MAX_PREDICTED_VALUES:,} values one in-silico screen predicts; ask for fewer cells "
                          "(the line's median group size is the default) or fewer genes at a time")
    trained = {(p, c) for p, c in zip(run.database.perts, run.database.contexts, strict=True)}
    measured = set(data.groups)
    status = {g: "in training" if (g, line) in trained else "held out" if (g, line) in measured else "in silico"
              for g in wanted}
    groups = [(g, line) for g in wanted]
    return KnockdownPlan(groups, dict.fromkeys(groups, n), status)


#: the most values (cells x genes x features) one in-silico screen predicts: beyond, memory, not a request
MAX_PREDICTED_VALUES = 2_000_000_000


def requested_genes(run: LoadedRun, data: PerturbationData, genes: Sequence[str]) -> list[str]:
    """The genes asked for, each once and spelled as the run or the screen spells it (``cct7`` is
    the run's ``CCT7``: one label per gene, data/validation.py); a control label, a label that looks
    like a control or a combination (``A+B``) is refused: none of them is one gene's knock-down."""
    kinds = sorted({type(g).__name__ for g in genes if not isinstance(g, str)})
    if kinds:
        raise ConfigError(f"genes: expected gene symbols (text), got {', '.join(kinds)}")
    cfg = run.config.data
    known = {spelling(p): p for p in [*run.meta["perts"], *run.database.perts, *(p for p, _ in data.groups)]}
    wanted = list(dict.fromkeys(known.get(spelling(g), g.strip()) for g in genes if g.strip()))
    if not wanted:
        raise ConfigError("--genes: no gene given; list gene symbols separated by commas (--genes MAPK1,TP53)")
    controls = {spelling(c) for c in [cfg.control_label, *cfg.control_labels]}
    allowed = {spelling(c) for c in cfg.allow_control_like}
    sep = cfg.combination_sep
    for gene in wanted:
        if spelling(gene) in controls or (looks_like_control(gene) and spelling(gene) not in allowed):
            raise ConfigError(f"--genes {gene}: a control label (or one that looks like it), not a gene to knock "
                              "down: a knock-down starts from the line's control cells")
        if sep and sep in gene:
            raise ConfigError(f"--genes {gene}: a combination of genes (joined by {sep!r}); ptrag predicts single-gene "
                              "knock-downs: list the genes one by one")
    return wanted


def _typical_group_size(data: PerturbationData, line: str) -> int:
    """Cells per knock-down when not asked: the line's median group size (100 if it has none)."""
    sizes = [len(data.group_indices(p, c)) for p, c in data.groups if c == line]
    return int(np.median(sizes)) if sizes else 100


def predict_planned(run: LoadedRun, data: PerturbationData, plan: KnockdownPlan, *,
                       log: Log = lambda message: None) -> tuple[list[GroupPrediction], list[dict]]:
    """The run's predicted cells of every planned group, each from ``plan.sizes`` control cells of
    its line whether or not the screen measured it, and the drop records."""
    positions, sizes = list(range(len(plan.groups))), dict(plan.sizes)
    if not run.members:
        preds, _, drops = predict_loaded(run, data, plan.groups, positions=positions, log=log, sizes=sizes)
        return preds, drops
    members = GroupMembers(run.members, data, reuse_saved=False, log=log, sizes=sizes)
    return (combine_groups(run.model.generator, members, plan.groups, positions,
                           nonnegative=run.config.model.nonnegative), members.drops)


@dataclass
class Evidence:
    """What the run's training lines say about one gene, for its prediction in another line."""

    lines: int  # other training lines (of the line's modality) that measured the gene
    agreement: float  # mean pairwise Pearson correlation of its responses there (NaN with < 2 lines)
    shared: float  # the power its responses share across those lines: mean of <r_l, r_l'> over pairs, >= 0
    total: float  # their mean power, mean of ||r_l||^2


def cross_line_evidence(run: LoadedRun, gene: str, line: str) -> Evidence:
    """``gene``'s observed responses in the run's training lines other than ``line`` (of ``line``'s
    modality): how many, how alike, and the power they share."""
    db = run.database
    rows = [i for i in db.entries_of(gene) if db.contexts[i] != line and db.comparable(line, db.contexts[i])]
    if len(rows) < 2:
        return Evidence(len(rows), float("nan"), float("nan"), float("nan"))
    r = np.asarray(db.response, dtype=np.float64)[rows]
    gram, k = r @ r.T, len(rows)
    corr = np.corrcoef(r)[np.triu_indices(k, k=1)]
    agreement = float(np.nanmean(corr)) if np.isfinite(corr).any() else float("nan")
    shared = max(float((gram.sum() - np.trace(gram)) / (k * (k - 1))), 0.0)
    return Evidence(k, agreement, shared, float(np.trace(gram) / k))


def expected_correlation(evidence: Evidence, noise: float) -> float:
    """The confidence: an estimate of the Pearson correlation to expect between the predicted and a
    measured mean change, shared / sqrt(total x (shared + noise)); ``noise``: the power of the
    sampling noise of a measured group's mean change (the line's control variance over its cells).
    High when the gene's response is alike across lines and strong against that noise."""
    if not np.isfinite(evidence.shared) or evidence.total <= 0:
        return float("nan")
    return float(evidence.shared / np.sqrt(evidence.total * (evidence.shared + noise)))


def measurement_noise(data: PerturbationData, line: str, cells: int) -> float:
    """The expected power of the sampling noise in the mean change of ``cells`` measured cells:
    the sum over features of the line's control-cell variance, divided by ``cells``."""
    return float(np.asarray(data.control_cells(line), dtype=np.float64).var(axis=0).sum() / max(cells, 1))


def effects_table(run: LoadedRun, preds: Sequence[GroupPrediction], plan: KnockdownPlan,
                  data: PerturbationData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ranked effects (strongest predicted mean change first) and the mean change per gene x
    feature: the predicted cells' mean minus the mean of the control cells they were predicted
    from (so the draw of control cells does not count as an effect)."""
    names = np.asarray([str(f) for f in data.features])
    rows, changes = [], {}
    for p in preds:
        start = data.X[p.ctrl_index].mean(axis=0) if p.ctrl_index is not None else p.ctrl.mean(axis=0)
        change = p.pred.mean(axis=0) - start
        changes[p.pert] = change
        order = np.argsort(change)
        evidence = cross_line_evidence(run, p.pert, p.context)
        confidence = expected_correlation(evidence, measurement_noise(data, p.context, len(p.pred)))
        rows.append({
            "gene": p.pert, "line": p.context, "cells": len(p.pred), "status": plan.status.get(p.pert, ""),
            "effect": float(np.linalg.norm(change)), "mean_abs_change": float(np.abs(change).mean()),
            "top_up": ", ".join(f"{names[i]} {change[i]:+.2f}" for i in order[::-1][:TOP] if change[i] > 0),
            "top_down": ", ".join(f"{names[i]} {change[i]:+.2f}" for i in order[:TOP] if change[i] < 0),
            "confidence": confidence, "cross_line_agreement": evidence.agreement,
            "measured_in_other_lines": evidence.lines,
        })
    table = pd.DataFrame(rows).sort_values("effect", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    matrix = pd.DataFrame.from_dict(changes, orient="index", columns=list(names))
    matrix.index.name = "gene"
    return table, matrix.loc[table.gene]
