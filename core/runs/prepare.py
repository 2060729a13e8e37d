"""Stage 1 of a run, prepare: claim the folder, read the data, split it, build the model.

Everything a run needs before training is decided here, in this order, so that a request that
cannot be honoured fails before any training: the folder is claimed (another run's folder is
refused before any data is read), the screen is read and validated, split, matched with gene
embeddings, the components are built and checked, the retrieval database is made from the
training groups, and config.yaml + fingerprint.json are written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..components.assembly import Components, build_components
from ..components.manager import PluginManager
from ..config import ExperimentConfig
from ..data.cellsets import CellSetSampler, Vocab
from ..data.coverage import apply_embedding_policy
from ..data.database import ResponseDatabase
from ..data.dataset import BATCH, PerturbationData
from ..data.embeddings import GeneEmbeddings, load_gene_embeddings
from ..data.gene_sets import GeneSets, load_gene_sets
from ..data.loading import load_screen
from ..data.split import Split, resolve_split
from ..data.validation import require_expression
from ..errors import DataError
from ..hookspecs import BuildContext
from ..model.compose import PtragModel
from ..model.neighbours import NeighbourTable
from ..training.device import resolve_device, seed_everything
from ..training.distributed import Dist, device_for, on_main, setup
from .fingerprints import config_identity, config_text, content_fingerprint, run_identity
from .folder import RunFolder, new_run_dir
from .requests import check_request, resolve_k, warn_no_other_line, warn_untrained, warn_zero_shot

Log = Callable[[str], None]


def load_embeddings(config: ExperimentConfig, perts: list[str]) -> GeneEmbeddings:
    """``data.gene_embeddings`` (pickle/npz/csv/parquet), else the packaged table or a stand-in."""
    return load_gene_embeddings(config.data.gene_embeddings, perts, config.data.duplicate_embeddings)


def build_context(config: ExperimentConfig, *, features: list[str], contexts: list[str], n_perts: int,
                  n_batches: int, embed_dim: int, device: torch.device) -> BuildContext:
    """What a component's factory learns about the run (the same for training and prediction)."""
    return BuildContext(
        n_genes=len(features), embed_dim=embed_dim, hidden_dim=config.model.hidden_dim, n_contexts=len(contexts),
        n_perts=n_perts, n_batches=n_batches, gene_names=tuple(features), context_names=tuple(contexts),
        seed=config.seed, device=str(device))


def assemble_model(config: ExperimentConfig, components: Components, database: ResponseDatabase,
                   contexts: list[str]) -> PtragModel:
    """The composed model of a run, for training and for prediction alike."""
    return PtragModel(components.generator, components.selector, database, hidden_dim=config.model.hidden_dim,
                      context=config.model.context, context_names=list(contexts),
                      nonnegative=config.model.nonnegative)


def run_meta(vocab: Vocab, database: ResponseDatabase, features: list[str]) -> dict[str, Any]:
    """What `ptrag predict` needs besides the weights: vocabularies and the retrieval database."""
    return {
        "features": list(features),
        "perts": list(vocab.perts), "contexts": list(vocab.contexts), "batches": list(vocab.batches),
        "pert_embedding": np.stack([vocab.pert_embedding[p] for p in vocab.perts]) if vocab.perts else None,
        "database": {
            "perts": list(database.perts), "contexts": list(database.contexts),
            "n_cells": np.asarray(database.n_cells), "embeddings": np.asarray(database.embeddings),
            "response": np.asarray(database.response),
            "control_mean": {c: np.asarray(v) for c, v in database.control_mean.items()},
            "modality": dict(database.modality),
        },
    }


def meta_problem(ck: Any) -> str | None:
    """What is wrong with a checkpoint's structure (as :func:`run_meta` and the trainer write it),
    None when nothing: a checkpoint edited or from elsewhere is one line, never a KeyError."""
    if not isinstance(ck, dict):
        return "not a mapping"
    weights = [ck.get(k) for k in ("model", "best_model")]
    if not all(w is None or isinstance(w, dict) for w in weights):
        return "its weights are not state dicts"  # None: a model without weights of its own (meta.pt alone)
    meta = ck.get("meta")
    if not isinstance(meta, dict):
        return "no 'meta' record"
    lists = ("features", "perts", "contexts", "batches")
    missing = [k for k in (*lists, "pert_embedding", "database") if k not in meta]
    if missing:
        return f"meta lacks {', '.join(missing)}"
    if not all(isinstance(meta[k], (list, tuple)) for k in lists):
        return "its vocabularies are not lists"
    emb = meta["pert_embedding"]
    if emb is not None and (getattr(emb, "ndim", 0) != 2 or len(emb) != len(meta["perts"])):
        return f"{len(meta['perts'])} perturbations but pert_embedding of shape {getattr(emb, 'shape', None)}"
    db = meta["database"]
    keys = ("perts", "contexts", "n_cells", "embeddings", "response", "control_mean")
    if not isinstance(db, dict) or any(k not in db for k in keys) or not isinstance(db["control_mean"], dict):
        return "its retrieval database is incomplete"
    n = len(db["perts"])
    if any(len(db[k]) != n for k in ("contexts", "n_cells", "embeddings", "response")):
        return "its retrieval database's columns differ in length"
    return None


@dataclass
class Prepared:
    """A run ready to train: its folder, data, split, components, model and samplers."""

    config: ExperimentConfig
    run_dir: Path
    folder: RunFolder
    dist: Dist
    device: torch.device
    data: PerturbationData
    split: Split
    components: Components
    database: ResponseDatabase
    model: PtragModel
    neighbours: NeighbourTable
    sampler: CellSetSampler
    meta: dict[str, Any]
    content: dict[str, Any]
    gene_sets: GeneSets | None
    log: Log
    started: float = field(default_factory=time.perf_counter)
    start_state: dict[str, Any] | None = None  # the model's weights before training (set by the train stage)
    ensemble: Any = None  # an ensemble of whole groups: its members (runs/ensemble.py GroupMembers)


@dataclass
class _Read:
    data: PerturbationData
    split: Split
    pert_embedding: dict[str, np.ndarray]
    components: Components
    gene_sets: GeneSets | None
    batches: list[str]


def _read(config: ExperimentConfig, manager: PluginManager, data: PerturbationData, device: torch.device,
          log: Log) -> _Read:
    """Validate the screen, split it, build the components, apply the embedding policy."""
    require_expression(data)  # raw counts, constant matrices: before any training
    split = resolve_split(config.data, data, config.seed)
    perts, contexts = data.perturbations, data.contexts
    table = load_embeddings(config, perts)
    batches = sorted(data.obs[BATCH].astype(str).unique()) if BATCH in data.obs else []
    ctx = build_context(config, features=list(data.features), contexts=contexts, n_perts=len(perts),
                        n_batches=len(batches), embed_dim=table.dim, device=device)
    components = build_components(config, manager, ctx)
    check_request(config, components.retriever)
    split, pert_embedding = apply_embedding_policy(
        split, table, perts, policy=config.data.missing_embedding, max_dropped_test=config.data.max_dropped_test,
        users=components.embedding_readers(), log=log)
    log(f"data: {data.source}: {len(data.obs):,} cells, {data.n_features} features, "
        f"{len(data.groups)} perturbation groups; split: {split.summary()}")
    gene_sets = load_gene_sets(config.data.gene_sets, data.perturbations, log)
    if not split.train or not split.test:
        raise DataError(f"{data.source}: the split leaves no {'training' if not split.train else 'test'} groups "
                        f"({split.summary()})")
    warn_zero_shot(split, log)
    warn_no_other_line(config, split, log)
    overlap = len(split.val) - len(split.fitting_val)
    if overlap:
        log(f"note: {overlap} validation group(s) are also test groups; they are left out of validation (no model is "
            "fitted or selected on a test group)")
    return _Read(data, split, pert_embedding, components, gene_sets, batches)


def prepare(config: ExperimentConfig, manager: PluginManager, *, log: Log, resume: bool = False,
            overwrite: bool = False, data: PerturbationData | None = None,
            loaded: PerturbationData | None = None) -> Prepared:
    """Stage 1 (see the module docstring). ``data``: a screen handed over in memory (it replaces
    ``data.path`` in the run's identity); ``loaded``: ``config.data`` already read (a main run's
    screen reused by its comparisons; the identity keeps naming the file)."""
    started = time.perf_counter()
    dist = setup(config.device)  # torchrun: join the process group; rank 0 owns the run folder
    log = log if dist.is_main else (lambda message: None)
    folder = on_main(lambda: RunFolder.claim(new_run_dir(config), run_identity(config, data), resume=resume,
                                             overwrite=overwrite), dist)
    seed_everything(config.seed)
    device = device_for(dist, resolve_device(config.device))
    if config.train.threads:  # one thread is far faster than two on an oversubscribed CPU
        torch.set_num_threads(config.train.threads)
    screen = data if data is not None else loaded if loaded is not None else load_screen(config.data)
    read = _read(config, manager, screen, device, log)
    split, components = read.split, read.components
    database = ResponseDatabase.from_data(screen, split.train,
                                          np.stack([read.pert_embedding[p] for p, _ in split.train]))
    config = resolve_k(config, components.retriever, len(database), log)
    content = content_fingerprint(screen, split, read.pert_embedding)
    run_dir = on_main(lambda: folder.begin(content, config_text(config), resolved=config_identity(config)), dist)
    components.fit(database)  # retriever.build, generator.fit
    model = assemble_model(config, components, database, screen.contexts).to(device)
    warn_untrained(config, model.trainable, log)
    neighbours = NeighbourTable(components.retriever, database, read.pert_embedding, components.k,
                                config.model.exclude_same_gene)
    vocab = Vocab(screen.perturbations, screen.contexts, read.pert_embedding, read.batches)  # batches: batch_encoder
    own_entry = {(p, c): i for i, (p, c) in enumerate(zip(database.perts, database.contexts, strict=True))}
    sampler = CellSetSampler(screen, split.train, vocab, cell_set_len=config.data.cell_set_len, query_entry=own_entry)
    return Prepared(config, run_dir, folder, dist, device, screen, split, components, database, model, neighbours,
                    sampler, run_meta(vocab, database, list(screen.features)), content, read.gene_sets, log, started)
