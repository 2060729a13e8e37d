"""A run's predictions of whole (perturbation, cell line) groups, whichever way its generator predicts.

Most generators predict cell set by cell set through the composed model (runs/predict.py); an
ensemble that combines whole groups predicts from its members' predictions of each group
(runs/ensemble.py). The run's held-out groups, its validation groups (calibration, selection) and
``ptrag predict`` on new data all go through here, so each is scored the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from ..data.dataset import PerturbationData
from ..data.split import Group
from ..data.validation import require_expression
from ..errors import DataError
from ..evaluation.scoring import GroupPrediction
from .ensemble import GroupMembers, combine_groups, empty_trace
from .predict import predict
from .prepare import Prepared
from .reload import LoadedRun, groups_to_predict, predict_loaded


def predict_groups(prep: Prepared, groups: Sequence[Group], positions: Sequence[int]
                   ) -> tuple[list[GroupPrediction], pd.DataFrame]:
    """The run's predictions of ``groups`` (each drawn from the run's seed and its position) and the
    retrieval trace."""
    if prep.ensemble is not None:
        preds = combine_groups(prep.components.generator, prep.ensemble, groups, positions,
                               nonnegative=prep.config.model.nonnegative)
        if len(preds) < len(groups):
            _members_left_out(prep, groups, preds)
        return preds, empty_trace()
    return predict(prep.model, prep.sampler, list(groups), prep.neighbours, seed=prep.config.seed,
                   positions=list(positions), device=prep.device, precision=prep.config.train.precision, log=prep.log)


def predict_screen(run: LoadedRun, data: PerturbationData, *, log: Callable[[str], None] = lambda message: None
                   ) -> tuple[list[GroupPrediction], pd.DataFrame, PerturbationData, list[dict]]:
    """Predict every perturbation group of a loaded screen (a file, or an in-memory AnnData
    through ``adata_to_data``); also returns the drop records (``Split.drops``) of groups left out.

    The data must hold log-normalised expression with the run's features (same names and order)
    and only cell lines the run was trained on. An ensemble's members predict the groups on this
    screen (never reusing what they saved for their own screen) and the ensemble combines them."""
    require_expression(data)
    groups = groups_to_predict(run, data)
    if not run.members:
        preds, trace, drops = predict_loaded(run, data, groups, log=log)
        return preds, trace, data, drops
    members = GroupMembers(run.members, data, reuse_saved=False, log=log)
    preds = combine_groups(run.model.generator, members, groups, list(range(len(groups))),
                           nonnegative=run.config.model.nonnegative)
    return preds, empty_trace(), data, members.drops


def _members_left_out(prep: Prepared, groups: Sequence[Group], preds: list[GroupPrediction]) -> None:
    """A group of the run that a member could not predict (it had no gene embedding for it, say):
    the ensemble has nothing to combine, which is an error, never a silent drop."""
    done = {(p.pert, p.context) for p in preds}
    missing = [g for g in groups if g not in done]
    why = next((f" ({d.get('member')}: {d.get('reason')})" for d in prep.ensemble.drops), "")
    raise DataError(f"{prep.run_dir}: the ensemble's members left out {len(missing)} of its {len(groups)} groups "
                    f"(first: {missing[0][0]} in {missing[0][1]}{why}); every member must predict every group: "
                    "give the members a gene-embedding table that covers them (--set data.gene_embeddings=FILE) "
                    "or --set data.missing_embedding=zero")
