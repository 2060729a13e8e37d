"""One run, from a resolved config to a run folder: data -> split -> components -> fit -> evaluate."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .checks import (apply_embedding_policy, check_request, data_drops, embedding_users, resolve_k,
                     warn_untrained, warn_zero_shot)
from .config import ExperimentConfig, component_params
from .data.database import ResponseDatabase
from .data.embeddings import GeneEmbeddings, random_embeddings
from .data.gene_sets import load_gene_sets
from .data.dataset import PerturbationData
from .data.loading import load_screen
from .data.split import Split, resolve_split
from .data.validation import require_expression
from .data.cellsets import CellSetSampler, EpochSchedule, Vocab, step_seed
from .distributed import SINGLE, Dist, broadcast, device_for, gather, on_main, setup
from .engine import Trainer, resolve_device, save_checkpoint, seed_everything
from .errors import ConfigError, DataError
from .evaluate import aggregate, score, summary_frame
from .model import NeighbourTable, PtragModel
from .outputs import HeldCells
from .predict import predict
from .verdict import retrieval_verdicts
from .hookspecs import BuildContext
from .losses import fit_pc_space, sample_blocks, uses_pc_space
from .manager import PluginManager
from .run_folder import (RunFolder, config_identity, config_text, content_fingerprint, fingerprint_summary,
                         inspect_folder, run_identity, write_csv, write_json)


@dataclass
class RunResult(HeldCells):
    """A finished run: its folder, config, metrics (long table and aggregates) and, as AnnData,
    ``predictions`` and ``real`` (held in memory with ``keep_cells``, else read from the folder)."""

    run_dir: Path
    config: ExperimentConfig
    metrics: pd.DataFrame  # long table (pert, context, metric, value)
    summary: dict[str, Any]  # metric -> aggregates
    retrieval: pd.DataFrame | None = None  # retrieval trace of the test groups (core/predict.py)
    training: dict[str, Any] | None = None  # steps, best step, best validation energy, seconds
    comparisons: list["RunResult"] | None = None  # runs of the `compare:` presets, same split/seed
    verdicts: list[Any] | None = None  # retrieval runs vs the best baseline (core/verdict.py)
    cells: Any = field(default=None, repr=False)  # CellEvalData held in memory (keep_cells), else read back
    # the screen the run read: its comparisons reuse it instead of reading it again, then release it
    screen: PerturbationData | None = field(default=None, repr=False, compare=False)

    @property
    def folder(self) -> Path:
        return self.run_dir

    @property
    def aggregates(self) -> pd.DataFrame:
        """metrics.json's aggregates as a table: one row per metric."""
        return summary_frame(self.summary)


def new_run_dir(config: ExperimentConfig) -> Path:
    if config.output.dir:
        return Path(config.output.dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.output.root) / f"{stamp}-{config.preset or 'custom'}-s{config.seed}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def load_embeddings(config: ExperimentConfig, perts: list[str]) -> GeneEmbeddings:
    """``data.gene_embeddings`` (pickle/npz/csv/parquet), else the packaged table or a stand-in."""
    from .data.embeddings import load_gene_embeddings

    return load_gene_embeddings(config.data.gene_embeddings, perts)


def run_experiment(
    config: ExperimentConfig,
    manager: PluginManager,
    *,
    log: Callable[[str], None] = lambda message: None,
    resume: bool = False,
    stop_at: int | None = None,
    overwrite: bool = False,
    data: PerturbationData | None = None,
    keep_cells: bool = False,
    loaded: PerturbationData | None = None,
) -> RunResult:
    """Train (if the generator is trainable) and evaluate one config; ``resume`` continues the
    run folder's ``checkpoint.pt``; ``overwrite`` replaces the run the folder holds (the folder
    rules: core/run_folder.py); ``stop_at`` interrupts training after that step (tests).
    ``data``: a screen already loaded (an in-memory AnnData, validated by ``adata_to_data``) in
    place of ``data.path``; ``keep_cells`` holds predictions.h5ad/real.h5ad in the result (rank 0).
    ``loaded``: ``config.data`` already read (the main run's screen, for its comparisons); unlike
    ``data`` it leaves the run's identity (its input files) as it is."""
    started = time.perf_counter()
    check_request(config)
    dist = setup(config.device)  # torchrun: join the process group; rank 0 owns the run folder
    if not dist.is_main:
        log = lambda message: None
    folder = on_main(lambda: RunFolder.claim(new_run_dir(config), run_identity(config, data), resume=resume,
                                             overwrite=overwrite), dist)
    seed_everything(config.seed)
    device = device_for(dist, resolve_device(config.device))
    if config.train.threads:  # one thread is far faster than two on an oversubscribed CPU
        import torch

        torch.set_num_threads(config.train.threads)

    data = data if data is not None else loaded if loaded is not None else load_screen(config.data)
    require_expression(data)  # raw counts, constant matrices: before any training
    split = resolve_split(config.data, data, config.seed)
    perts = data.perturbations
    table = load_embeddings(config, perts)
    contexts = data.contexts
    batches = sorted(data.obs["batch"].astype(str).unique()) if "batch" in data.obs else []
    ctx = BuildContext(
        n_genes=data.n_features, embed_dim=table.dim, hidden_dim=config.model.hidden_dim,
        n_contexts=len(contexts), n_perts=len(perts), n_batches=len(batches),
        gene_names=tuple(data.features), context_names=tuple(contexts), seed=config.seed,
        device=str(device),
    )
    build = lambda kind, choice: manager.get(kind, choice.name).build(component_params(choice, kind, manager), ctx)
    retriever = build("retriever", config.retriever)
    selector = build("selector", config.selector)
    generator = build("generator", config.generator)
    metrics = {choice.name: build("metric", choice) for choice in config.metrics}
    split, pert_embedding = apply_embedding_policy(
        split, table, perts, policy=config.data.missing_embedding, max_dropped_test=config.data.max_dropped_test,
        users=embedding_users(retriever, generator), log=log)
    log(f"data: {data.source}: {len(data.obs):,} cells, {data.n_features} features, "
        f"{len(data.groups)} perturbation groups; split: {split.summary()}")
    gene_sets = load_gene_sets(config.data.gene_sets, data.perturbations, log)
    if not split.train or not split.test:
        raise DataError(f"{data.source}: the split leaves no {'training' if not split.train else 'test'} groups "
                        f"({split.summary()})")
    warn_zero_shot(split, log)
    database = ResponseDatabase.from_data(data, split.train, np.stack([pert_embedding[p] for p, _ in split.train]))
    config = resolve_k(config, len(database), log)
    content = content_fingerprint(data, split, pert_embedding)
    run_dir = on_main(lambda: folder.begin(content, config_text(config), resolved=config_identity(config)), dist)
    retriever.build(database.embeddings, database.meta)
    generator.fit(database)
    model = PtragModel(generator, selector, database, hidden_dim=config.model.hidden_dim,
                       context=config.model.context, context_names=contexts, nonnegative=config.model.nonnegative).to(device)
    warn_untrained(config, model.trainable, log)

    k = int(config.retriever.params.get("k", 0) or 0)
    neighbours = NeighbourTable(retriever, database, pert_embedding, k, config.model.exclude_same_gene)
    vocab = Vocab(perts, contexts, pert_embedding, batches)  # batches feed generator.batch_encoder
    own_entry = {(p, c): i for i, (p, c) in enumerate(zip(database.perts, database.contexts))}
    sampler = CellSetSampler(data, split.train, vocab, cell_set_len=config.data.cell_set_len, query_entry=own_entry)
    meta = run_meta(config, vocab, database, batches, list(data.features))
    training = None
    if model.trainable:
        training = train_model(config, model, sampler, neighbours, split, device, run_dir, meta, dist,
                               log=log, resume=resume, stop_at=stop_at)

    def baseline_checkpoint() -> None:  # baselines, and train.steps=0: predict needs one
        if not (run_dir / "checkpoint.pt").is_file():
            save_checkpoint(run_dir / "checkpoint.pt", {"model": model.state_dict(), "best_model": None, "step": 0,
                                                        "meta": meta})
    on_main(baseline_checkpoint, dist)
    # each rank predicts its share of the held-out groups; rank 0 gathers, scores and writes
    mine = dist.shard(list(enumerate(split.test)))
    parts = gather(predict(model, sampler, [g for _, g in mine], neighbours, seed=config.seed,
                           positions=[i for i, _ in mine], device=device, log=log), dist)

    held: dict[str, Any] = {}  # rank 0's cells: kept out of the broadcast below

    def finish() -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame]:
        """On rank 0: score the gathered predictions and write the run's result files."""
        predictions, trace = merge_shards(parts)
        long = score(predictions, metrics)
        summary = aggregate(long, metrics, seed=config.seed)
        write_csv(run_dir / "metrics.csv", long)
        retriever.save(run_dir / "retriever")
        info = {
            "ptrag_version": _version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3),
            "device": str(device),
            "world_size": dist.world_size,
            "global_batch": {"sets": dist.world_size * config.train.batch_size,
                             "cells": dist.world_size * config.train.batch_size * config.data.cell_set_len},
            "data": data.source,
            "split": split.summary(),
            "n_test_groups": len(split.test),
            "dropped": data_drops(data) + split.drops,  # every group left out, and why
            "fingerprint": fingerprint_summary(folder, content, config.seed),
            "components": {s: getattr(config, s).name for s in ("retriever", "selector", "generator")},
            "training": training,
        }
        from .outputs import cell_eval_data, describe_cell_eval_files, write_retrieval  # issue 7

        held["cells"] = cell_eval_data(predictions, data, where=run_dir)
        info["outputs"] = held["cells"].write(run_dir)  # predictions.h5ad, real.h5ad
        log(describe_cell_eval_files(info["outputs"]))
        if trace is not None and len(trace):
            write_retrieval(run_dir, trace, data, gene_sets)  # retrieval.csv + retrieval_summary.json
            # a selector that keeps nothing turns a RAG model into its generator alone; say so loudly.
            # No keep-weights at all (selector none) means the generator uses the candidates directly.
            weights = trace["keep_weight"].astype(float)
            info["retrieval_used"] = bool(weights.isna().all() or (weights > 0).any())
            if not info["retrieval_used"]:
                log(f"warning: the {config.selector.name} selector kept none of the retrieved candidates for any "
                    "held-out query, so retrieval did not affect these predictions (keep_ratio in log.jsonl; "
                    "docs/model.md: the sparsity penalty can switch retrieval off)")
        write_json(run_dir / "metrics.json", {"run": info, "metrics": summary})  # last: marks the run finished
        return long, summary, trace

    long, summary, trace = on_main(finish, dist)
    return RunResult(run_dir, config, long, summary, retrieval=trace, training=training,
                     cells=held.get("cells") if keep_cells else None, screen=data)


def merge_shards(parts: list[tuple[list[Any], pd.DataFrame]]) -> tuple[list[Any], pd.DataFrame]:
    """The ranks' (predictions, trace) back in the order of the full list of groups: rank r
    predicted groups r, r + world, r + 2 world, ... (``Dist.shard``)."""
    world = len(parts)
    n = sum(len(preds) for preds, _ in parts)
    predictions = [parts[i % world][0][i // world] for i in range(n)]
    order = {(p.pert, p.context): i for i, p in enumerate(predictions)}
    traces = [t for _, t in parts if t is not None and len(t)]
    if not traces:
        return predictions, parts[0][1]
    trace = pd.concat(traces, ignore_index=True)
    key = trace.apply(lambda row: order[(row["pert"], row["context"])], axis=1) if world > 1 else None
    if key is not None:
        trace = trace.assign(_order=key).sort_values(["_order", "rank"], kind="stable") \
            .drop(columns="_order").reset_index(drop=True)
    return predictions, trace


def run_meta(config: ExperimentConfig, vocab: Vocab, database: ResponseDatabase, batches: list[str],
             features: list[str]) -> dict[str, Any]:
    """What `ptrag predict` needs besides the weights: vocabularies and the retrieval database."""
    return {
        "features": list(features),
        "perts": list(vocab.perts), "contexts": list(vocab.contexts), "batches": list(batches),
        "pert_embedding": np.stack([vocab.pert_embedding[p] for p in vocab.perts]) if vocab.perts else None,
        "database": {
            "perts": list(database.perts), "contexts": list(database.contexts),
            "n_cells": np.asarray(database.n_cells), "embeddings": np.asarray(database.embeddings),
            "response": np.asarray(database.response),
            "control_mean": {c: np.asarray(v) for c, v in database.control_mean.items()},
        },
    }


def train_model(config: ExperimentConfig, model: PtragModel, sampler: CellSetSampler,
                neighbours: NeighbourTable, split: Split, device, run_dir: Path, meta: dict[str, Any],
                dist: Dist = SINGLE, *, log: Callable[[str], None], resume: bool,
                stop_at: int | None) -> dict[str, Any]:
    """Precompute stage-1 neighbours (rank 0, shared with the others), draw fixed validation sets,
    and run the engine; each rank draws its share of every epoch's training groups."""
    groups = list(split.train) + list(split.val)
    share_neighbours(neighbours, dist, lambda: neighbours.add(groups))
    val_rng = np.random.default_rng([config.seed, 1])  # fixed sets, independent of training draws
    val_groups = [g for g in split.val for _ in range(config.train.val_sets)]
    size = config.train.eval_batch_size
    val_batches = [neighbours.attach(sampler.make_batch(val_groups[i:i + size], val_rng))
                   for i in range(0, len(val_groups), size)]
    exact = getattr(neighbours.retriever, "exact", True)
    space = None
    if uses_pc_space(config.train.loss):  # each line's principal axes, from its training cells only
        blocks = sample_blocks(sampler.data, split.train, sampler.vocab.contexts, np.random.default_rng([config.seed, 3]))
        space = fit_pc_space(blocks)
    schedule = EpochSchedule(len(split.train), config.train.batch_size, config.seed, dist.rank, dist.world_size)
    pin = device.type == "cuda"

    def sample(step: int):
        rng = np.random.default_rng(step_seed(config.seed, step, dist.rank))
        batch = neighbours.attach(sampler.make_batch([split.train[i] for i in schedule.groups(step)], rng))
        return batch.pin_memory() if pin else batch

    trainer = Trainer(
        model, sample=sample, val_batches=val_batches, train_cfg=config.train, loss=config.train.loss,
        device=device, seed=config.seed, run_dir=run_dir, meta=meta,
        on_epoch=None if exact else lambda: share_neighbours(neighbours, dist, neighbours.refresh),
        epoch_steps=schedule.steps_per_epoch, space=space, dist=dist, log=log,
    )
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    procs = f" x {dist.world_size} processes (global batch {dist.world_size * config.train.batch_size} sets)" \
        if dist.enabled else ""
    log(f"training {config.generator.name} + {config.selector.name} ({n_params:,} parameters) for "
        f"{config.train.steps} steps on {device}{procs}; validation on {len(split.val)} groups every "
        f"{config.train.val_every}")
    result = trainer.fit(resume=resume, stop_at=stop_at)
    log(f"trained {result.steps} steps in {result.seconds:.1f} s; best validation energy "
        f"{result.best_val:.4g} at step {result.best_step}")
    start = result.history[0]["val_energy"] if result.history and result.history[0]["step"] == 0 else None
    return {"steps": result.steps, "best_step": result.best_step,
            "best_val_energy": None if not np.isfinite(result.best_val) else result.best_val,
            "start_val_energy": start,
            "seconds": round(result.seconds, 3), "stopped_early": result.stopped_early}


def share_neighbours(neighbours: NeighbourTable, dist: Dist, search: Callable[[], None]) -> None:
    """Run a stage-1 ``search`` on rank 0 only and give every rank its rows (one search per run,
    and identical neighbours on every rank even for approximate indexes)."""
    if not dist.enabled:
        search()
        return
    if dist.is_main:
        search()
    neighbours.adopt(broadcast(neighbours.export() if dist.is_main else None, dist))


def run_comparisons(result: RunResult, manager: PluginManager, *,
                    log: Callable[[str], None] = lambda message: None,
                    data: PerturbationData | None = None, keep_cells: bool = False) -> list[RunResult]:
    """Run each ``compare:`` preset on the main run's data, split, seed, device and training
    budget, into ``<run>/compare/<preset>``; writes ``<run>/compare.csv`` (preset x metric means)
    and ``<run>/verdict.csv`` (each trained retrieval run vs the best baseline, paired tests).
    ``data``/``keep_cells``: as for :func:`run_experiment` (the main run's in-memory screen). The
    presets share the main run's data config, so they reuse the screen it read (``result.screen``),
    which is released afterwards."""
    from .config import resolve_config

    config = result.config
    out = []
    for name in config.compare:
        # the same budget, but each preset keeps its own loss (part of a model's design)
        extra = {"seed": config.seed, "device": config.device, "data": config.data.model_dump(mode="json"),
                 "train": config.train.model_dump(mode="json", exclude={"loss"}), "compare": [],
                 "output": {"dir": str(result.run_dir / "compare" / name)}}
        cfg = resolve_config(None, preset=name, budget=config.budget, extra=extra, manager=manager)
        if config.metrics:
            cfg = cfg.model_copy(update={"metrics": config.metrics})
        log(f"compare: {name}")
        done = inspect_folder(cfg.output.dir, run_identity(cfg, data)).kind in ("finished", "checkpoint")
        run = run_experiment(cfg, manager, log=log, resume=done,  # a resumed main run resumes these too
                             data=data, keep_cells=keep_cells, loaded=result.screen)
        run.screen = None
        out.append(run)
    result.screen = None  # the comparisons have run: free the matrix
    rows = [{"preset": r.config.preset, "metric": m, "mean": agg["mean"], "ci95_lo": agg["ci95"][0],
             "ci95_hi": agg["ci95"][1], "direction": agg["direction"]}
            for r in [result, *out] for m, agg in r.summary.items()]
    write_csv(result.run_dir / "compare.csv", pd.DataFrame(rows))
    result.comparisons = out
    result.verdicts = retrieval_verdicts([result, *out])
    tests = [v.tests.assign(run=v.run, beat=v.beat) for v in result.verdicts]
    if tests:
        write_csv(result.run_dir / "verdict.csv", pd.concat(tests))
    return out


def _version() -> str:
    from . import __version__

    return __version__
