"""After training: fit an ensemble on the validation groups, and protect a strong start.

Two rules, each applied only to a generator that declares it:

- ``calibrates``: the generator fits something (an ensemble's weights) on fixed cell sets of the
  validation groups, never a test group;
- ``protects_start``: its state before training or calibration is a strong baseline (the
  evidence model's untrained start is ``gene-other-lines``; a stack with zero weights is its
  backbone). The trained or calibrated state is kept only if it is better on the validation
  groups on both energy and pearson-delta; otherwise the start is restored. A gain on one headline
  metric never buys a loss on the other.
"""

from __future__ import annotations

from typing import Any

import torch

from ..components.assembly import build_metrics
from ..components.guards import calling
from ..components.manager import PluginManager
from ..config import ComponentChoice
from ..evaluation.scoring import score
from ..evaluation.verdict import describe_fit, start_name
from ..hookspecs import BuildContext
from ..training.checkpoints import load_checkpoint, save_checkpoint
from ..training.distributed import on_main
from .ensemble import write_calibration_table
from .groups import predict_groups
from .prepare import Prepared
from .train import validation_batches

HEADLINE = ("energy", "pearson-delta")  # the metrics a protected start must lose on both to be replaced
_POSITIONS = 1_000_000  # seed positions of validation predictions, apart from the test groups'


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def validation_positions(groups: list[Any]) -> list[int]:
    """Where each validation group's draws come from: apart from the test groups' positions, and the
    same for calibration and selection (so an ensemble's members predict each group once)."""
    return [_POSITIONS + i for i in range(len(groups))]


def _validation_scores(prep: Prepared, manager: PluginManager) -> dict[str, float]:
    """Mean energy and pearson-delta of the model's predictions of the validation groups, predicted
    and scored as the test groups are."""
    groups = prep.split.fitting_val
    predictions, _ = predict_groups(prep, groups, validation_positions(groups))
    ctx = BuildContext(n_genes=prep.data.n_features, gene_names=tuple(prep.data.features), seed=prep.config.seed)
    metrics = build_metrics([ComponentChoice(name=n) for n in HEADLINE], manager, ctx)
    table = score(predictions, metrics)
    return {m: float(table.loc[table.metric == m, "value"].mean()) for m in HEADLINE}


def _better_on_both(new: dict[str, float], start: dict[str, float]) -> bool:
    return new["energy"] < start["energy"] and new["pearson-delta"] > start["pearson-delta"]


def protect_start(prep: Prepared, start: dict[str, torch.Tensor], manager: PluginManager,
                  changed: str) -> dict[str, Any]:
    """Keep the trained (or calibrated) state only if it beats the start on both headline metrics."""
    chosen = _state(prep.model)
    new = _validation_scores(prep, manager)
    prep.model.load_state_dict(start)
    before = _validation_scores(prep, manager)
    kept = changed if _better_on_both(new, before) else "start"
    if kept != "start":
        prep.model.load_state_dict(chosen)
    return {"kept": kept, "validation": {m: {changed: new[m], "start": before[m]} for m in HEADLINE},
            "groups": len(prep.split.fitting_val)}


def _record_in_checkpoint(prep: Prepared, selection: dict[str, Any]) -> None:
    """checkpoint.pt's best weights are the ones kept, so `ptrag predict` uses them too."""
    path = prep.run_dir / "checkpoint.pt"

    def save() -> None:
        if path.is_file():
            ck = load_checkpoint(path)
            ck["best_model"], ck["selection"] = _state(prep.model), selection
            save_checkpoint(path, ck)

    on_main(save, prep.dist)


def _calibrate_sets(prep: Prepared) -> dict[str, Any]:
    """An ensemble of cell sets: fitted on fixed cell sets of the validation groups."""
    batches = [b.to(prep.device) for b in validation_batches(prep)]
    with calling(prep.components.generator, "calibrate"):
        fitted = prep.components.generator.calibrate(batches)
    return fitted


def _calibrate_groups(prep: Prepared) -> dict[str, Any]:
    """An ensemble of whole groups: fitted on its members' predictions of every validation group
    and the groups' real cells; what it saw is written to calibration.csv."""
    generator, groups = prep.components.generator, prep.split.fitting_val
    views = [view for view, _ in prep.ensemble.cells(generator.capabilities.members, groups,
                                                     validation_positions(groups), with_real=True)]
    with calling(generator, "calibrate_groups"):
        fitted = generator.calibrate_groups(views)
    on_main(lambda: write_calibration_table(prep.run_dir, views, prep.data), prep.dist)
    return fitted


def calibrate_and_protect(prep: Prepared, training: dict[str, Any] | None, start: dict[str, torch.Tensor] | None,
                          manager: PluginManager) -> dict[str, Any] | None:
    """What the generator's declared rules did, merged into the training summary."""
    caps = prep.components.generator.capabilities
    out = dict(training or {})
    if caps.calibrates:
        start = _state(prep.model)
        if not prep.split.fitting_val:
            prep.log("note: no validation groups to calibrate on: the ensemble keeps its start (its backbone)")
            return out or None
        prep.model.eval()
        out["calibration"] = _calibrate_groups(prep) if prep.ensemble is not None else _calibrate_sets(prep)
    changed = "calibrated" if caps.calibrates else "trained" if training else ""
    if not caps.calibrates and training and training.get("diverged_at_step") is not None and not training["best_step"]:
        changed = ""  # training diverged before it improved: the model holds its start already
    if caps.protects_start and changed and start is not None and prep.split.fitting_val:
        out["selection"] = protect_start(prep, start, manager, changed)
        if training:
            _record_in_checkpoint(prep, out["selection"])
    said = describe_fit(prep.config.preset or prep.config.generator.name, out, start_name(caps.members))
    if said:
        prep.log(said)
    return out or None

