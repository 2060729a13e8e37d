"""A finished run rebuilt from its folder, to predict new data (``ptrag predict``, ``ptrag.predict``),
and an ensemble's members: finished runs that predict for the ensemble.

A member is rebuilt from its run folder (its configuration, best weights and saved index) and
predicts with its own stage-1 neighbours and perturbation vocabulary, so any preset, a plugin's
included, can be one: an ensemble that combines cell sets gets each member as a function of a
batch (:class:`MemberModel`); one that combines whole groups gets the loaded member runs
(``LoadedRun.members``; runs/ensemble.py). An ensemble run's members live in the top run's
``compare/`` folder (``comparator_folder``), where prediction finds them again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..components.assembly import build_components, embedding_readers
from ..components.manager import PluginManager
from ..config import resolve_config
from ..data.cellsets import CellSetSampler, Vocab
from ..data.coverage import apply_embedding_policy
from ..data.database import ResponseDatabase
from ..data.dataset import PerturbationData
from ..data.split import Split
from ..errors import ConfigError, DataError
from ..evaluation.scoring import GroupPrediction
from ..interfaces import CellSetBatch, Retriever
from ..model.compose import PtragModel
from ..model.neighbours import NeighbourTable
from ..training.checkpoints import load_checkpoint, load_weights
from ..training.device import resolve_device
from .folder import require_unedited
from .predict import predict
from .prepare import assemble_model, build_context, load_embeddings, meta_problem


@dataclass
class LoadedRun:
    """A finished run folder rebuilt for prediction: config, model (best weights), retriever,
    retrieval database and the training vocabularies."""

    run_dir: Path
    config: Any
    model: PtragModel
    retriever: Retriever
    database: ResponseDatabase
    meta: dict[str, Any]
    device: torch.device
    members: dict[str, LoadedRun] = field(default_factory=dict)  # an ensemble of whole groups: preset -> run


class MemberModel:
    """A loaded member run as ``batch -> predicted cells [B,S,G]`` (evaluation mode, no gradients)."""

    def __init__(self, loaded: LoadedRun, pert_embedding: dict[str, np.ndarray]):
        self.loaded = loaded
        caps = loaded.retriever.capabilities
        self.neighbours = NeighbourTable(loaded.retriever, loaded.database, pert_embedding,
                                         caps.k if caps.retrieves else 0, loaded.config.model.exclude_same_gene)
        self.pert_index = {p: i for i, p in enumerate(loaded.meta["perts"])}
        loaded.model.eval()

    @torch.no_grad()
    def __call__(self, batch: CellSetBatch) -> torch.Tensor:
        index = torch.tensor([self.pert_index.get(p, -1) for p in batch.perts], device=batch.ctrl.device)
        mine = self.neighbours.attach(replace(batch, pert_index=index, neighbour_ids=None, neighbour_scores=None))
        pred, _ = self.loaded.model(mine.to(self.loaded.device))
        return pred.to(batch.ctrl.device, batch.ctrl.dtype)


def comparator_folder(run_dir: Path, preset: str) -> Path:
    """Where ``preset`` runs beside a run: ``<top run>/compare/<preset>``, the top run being this
    run, or the run whose comparator this run is (so an ensemble reuses its sibling comparators)."""
    top = run_dir.parent.parent if run_dir.parent.name == "compare" else run_dir
    return top / "compare" / preset


def load_members(folders: dict[str, Path], manager: PluginManager, device: torch.device) -> dict[str, LoadedRun]:
    """An ensemble's member runs, each rebuilt from its folder."""
    return {preset: load_run(folder, manager, device=str(device)) for preset, folder in folders.items()}


def _attach(generator: Any, folders: dict[str, Path], manager: PluginManager, device: torch.device,
            pert_embedding: dict[str, np.ndarray]) -> dict[str, LoadedRun]:
    """Members for an ensemble: attached as batch functions (``combines="sets"``), or returned as
    loaded runs for the engine to combine group by group (``combines="groups"``)."""
    if not folders:
        return {}
    runs = load_members(folders, manager, device)
    if generator.capabilities.combines == "groups":
        return runs
    generator.attach_members({preset: MemberModel(run, pert_embedding) for preset, run in runs.items()})
    return {}


def _database(meta: dict[str, Any]) -> ResponseDatabase:
    db = meta["database"]
    return ResponseDatabase(perts=list(db["perts"]), contexts=list(db["contexts"]), n_cells=db["n_cells"],
                            embeddings=db["embeddings"], response=db["response"],
                            control_mean=dict(db["control_mean"]), modality=dict(db.get("modality") or {}))


def load_run(run_dir: str | Path, manager: PluginManager, device: str = "auto") -> LoadedRun:
    """Rebuild a run's model from ``config.yaml`` + ``checkpoint.pt`` + the saved retriever."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml); give the folder `ptrag run` printed last")
    if not (run_dir / "metrics.json").is_file():
        raise ConfigError(f"{run_dir}: the run has not finished (no metrics.json); continue it with "
                          f"ptrag run --resume {run_dir}")
    config = resolve_config(run_dir / "config.yaml", manager=manager)
    require_unedited(run_dir)
    ck = load_checkpoint(run_dir / "checkpoint.pt")
    problem = meta_problem(ck)
    if problem:
        raise ConfigError(f"{run_dir / 'checkpoint.pt'}: not a checkpoint ptrag wrote ({problem}); use the run "
                          "folder as ptrag left it, or run it again")
    meta, database, dev = ck["meta"], _database(ck["meta"]), resolve_device(device)
    emb = meta["pert_embedding"]
    ctx = build_context(config, features=meta["features"], contexts=meta["contexts"], n_perts=len(meta["perts"]),
                        n_batches=len(meta["batches"]), embed_dim=int(emb.shape[1]) if emb is not None else 0,
                        device=dev)
    components = build_components(config, manager, ctx, metrics=False)
    components.load_retriever(run_dir / "retriever")
    retriever = components.retriever
    components.fit(database, index=False)  # baselines keep plain-Python state too; buffers are overwritten below
    vectors = dict(zip(meta["perts"], meta["pert_embedding"], strict=True)) if emb is not None else {}
    members = _attach(components.generator,
                      {m: comparator_folder(run_dir, m) for m in components.generator.capabilities.members},
                      manager, dev, vectors)
    model = assemble_model(config, components, database, list(meta["contexts"]))
    load_weights(model, ck.get("best_model") or ck["model"], run_dir / "checkpoint.pt")
    return LoadedRun(run_dir, config, model.to(dev), retriever, database, meta, dev, members)


def groups_to_predict(run: LoadedRun, data: PerturbationData) -> list[tuple[str, str]]:
    """Every perturbation group of ``data`` that ``run`` can predict (its features, trained lines,
    control cells of the line); anything else is one error naming the file."""
    path = data.source  # the file's path, or what an in-memory screen is called
    if list(data.features) != list(run.meta["features"]):
        raise DataError(f"{path}: its {data.n_features} expression features differ from the run's "
                        f"{len(run.meta['features'])} (names or order); use the same feature set / data.embed_key")
    contexts = list(run.meta["contexts"])
    unknown = sorted({c for _, c in data.groups} - set(contexts))
    if unknown:
        raise DataError(f"{path}: cell line(s) {', '.join(unknown)} were not in the run's training data "
                        f"({', '.join(contexts)}); predict only trained cell lines")
    groups = [g for g in data.groups if len(data.control_indices(g[1]))]
    if not groups:
        raise DataError(f"{path}: no perturbation group with control cells of the same cell line to predict")
    return groups


def predict_loaded(run: LoadedRun, data: PerturbationData, groups: list[tuple[str, str]], *,
                   positions: list[int] | None = None, log: Callable[[str], None] = lambda message: None,
                   sizes: dict[tuple[str, str], int] | None = None
                   ) -> tuple[list[GroupPrediction], pd.DataFrame, list[dict]]:
    """``groups`` of a screen predicted through a loaded run's model (cell set by cell set), with the
    run's seed and each group's ``positions`` (default 0, 1, ...: its place in the list), as the
    run itself would predict them; also the drop records of groups left out. ``sizes``: groups
    never measured in ``data`` (in-silico knock-downs), each predicted as that many cells.

    Genes new to the run get their embedding from the run's gene-embedding source under the run's
    data.missing_embedding policy (data/coverage.py)."""
    config = run.config
    known = list(run.meta["perts"])
    pert_embedding = dict(zip(known, run.meta["pert_embedding"], strict=True))
    new = sorted({p for p, _ in groups} - set(known))
    where = dict(zip(groups, positions if positions is not None else range(len(groups)), strict=True))
    drops: list[dict] = []
    if new:
        log(f"{len(new)} perturbation(s) new to the run ({', '.join(new[:5])})")
        asked = Split(train=[], test=groups, description=f"{data.source}: {len(groups)} groups")
        kept, vectors = apply_embedding_policy(
            asked, load_embeddings(config, new), new, policy=config.data.missing_embedding,
            max_dropped_test=config.data.max_dropped_test, users=embedding_readers(run.retriever, run.model.generator),
            log=log)
        pert_embedding.update(vectors)
        groups, drops = kept.test, kept.drops
        if not groups:
            raise DataError(f"{data.source}: every group was dropped ({kept.summary()}); nothing to predict")
    vocab = Vocab(known + new, list(run.meta["contexts"]), pert_embedding, list(run.meta["batches"]))
    sampler = CellSetSampler(data, groups, vocab, cell_set_len=config.data.cell_set_len)
    k = run.retriever.capabilities.k if run.retriever.capabilities.retrieves else 0
    neighbours = NeighbourTable(run.retriever, run.database, pert_embedding, k, config.model.exclude_same_gene)
    preds, trace = predict(run.model, sampler, groups, neighbours, seed=config.seed, device=run.device,
                           positions=[where[g] for g in groups], precision=config.train.precision, log=log,
                           sizes=sizes)
    check_finite(run, preds, data)
    return preds, trace, drops


def check_finite(run: LoadedRun, preds: list[GroupPrediction], data: PerturbationData) -> None:
    """Never written: a NaN prediction is no prediction."""
    bad = [p for p in preds if not np.isfinite(p.pred).all()]
    if bad:
        raise DataError(f"{run.run_dir}: its model predicted non-finite values (NaN or inf) for {len(bad)} of "
                        f"{len(preds)} group(s) of {data.source} (first: {bad[0].pert} in {bad[0].context}); "
                        "nothing was written")


def attach_members(prep: Any, members: list[Any], manager: PluginManager) -> dict[str, LoadedRun]:
    """Hand an ensemble generator its trained members (nothing to do for other generators); an
    ensemble of whole groups gets nothing attached: its member runs are returned for the engine."""
    return _attach(prep.components.generator, {run.config.preset: run.run_dir for run in members}, manager,
                   prep.device, prep.sampler.vocab.pert_embedding)
