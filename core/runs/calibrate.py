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
from ..evaluation.aggregate import fmt
from ..evaluation.scoring import score
from ..hookspecs import BuildContext
from ..training.checkpoints import load_checkpoint, save_checkpoint
from ..training.distributed import on_main
from .predict import predict
from .prepare import Prepared
from .train import validation_batches

HEADLINE = ("energy", "pearson-delta")  # the metrics a protected start must lose on both to be replaced
_POSITIONS = 1_000_000  # seed positions of validation predictions, apart from the test groups'


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _validation_scores(prep: Prepared, manager: PluginManager) -> dict[str, float]:
    """Mean energy and pearson-delta of the model's predictions of the validation groups."""
    groups = prep.split.fitting_val
    predictions, _ = predict(prep.model, prep.sampler, groups, prep.neighbours, device=prep.device,
                             precision=prep.config.train.precision, seed=prep.config.seed,
                             positions=[_POSITIONS + i for i in range(len(groups))])
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
    prep.log(f"selection on {len(prep.split.fitting_val)} validation groups: {changed} energy {fmt(new['energy'])}, "
             f"pearson-delta {fmt(new['pearson-delta'])} vs start {fmt(before['energy'])}, "
             f"{fmt(before['pearson-delta'])}: kept the {kept if kept == 'start' else changed} state")
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


def calibrate_and_protect(prep: Prepared, training: dict[str, Any] | None, start: dict[str, torch.Tensor] | None,
                          manager: PluginManager) -> dict[str, Any] | None:
    """What the generator's declared rules did, merged into the training summary."""
    caps = prep.components.generator.capabilities
    out = dict(training or {})
    if caps.calibrates:
        start = _state(prep.model)
        batches = [b.to(prep.device) for b in validation_batches(prep)]
        if not batches:
            prep.log("note: no validation groups to calibrate on: the ensemble keeps its start (its backbone)")
            return out or None
        prep.model.eval()
        with calling(prep.components.generator, "calibrate"):
            out["calibration"] = prep.components.generator.calibrate(batches)
        prep.log(f"calibration on {len(batches)} validation batch(es): {out['calibration']}")
    changed = "calibrated" if caps.calibrates else "trained" if training else ""
    if not caps.calibrates and training and training.get("diverged_at_step") is not None and not training["best_step"]:
        changed = ""  # training diverged before it improved: the model holds its start already
    if caps.protects_start and changed and start is not None and prep.split.fitting_val:
        out["selection"] = protect_start(prep, start, manager, changed)
        if training:
            _record_in_checkpoint(prep, out["selection"])
    return out or None

