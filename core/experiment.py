"""One run, from a resolved config to a run folder: data -> split -> components -> fit -> evaluate."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .config import ExperimentConfig, component_params
from .data.database import ResponseDatabase
from .data.embeddings import GeneEmbeddings, random_embeddings
from .data.loading import load_screen
from .data.split import Split, random_fewshot_split
from .engine import resolve_device, seed_everything
from .errors import ConfigError, DataError
from .evaluate import aggregate, predict_groups, score
from .hookspecs import BuildContext
from .manager import PluginManager


@dataclass
class RunResult:
    run_dir: Path
    config: ExperimentConfig
    metrics: pd.DataFrame  # long table (pert, context, metric, value)
    summary: dict[str, Any]  # metric -> aggregates


def new_run_dir(config: ExperimentConfig) -> Path:
    if config.output.dir:
        return Path(config.output.dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.output.root) / f"{stamp}-{config.preset or 'custom'}-s{config.seed}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def load_split(config: ExperimentConfig, data) -> Split:
    if config.data.split:
        raise ConfigError(f"{config.data.split}: split files are not supported yet; omit --split for a random few-shot split")
    return random_fewshot_split(
        data, seed=config.seed, holdout_context=config.data.holdout_context,
        test_fraction=config.data.test_fraction, val_fraction=config.data.val_fraction,
    )


def load_embeddings(config: ExperimentConfig, perts: list[str]) -> GeneEmbeddings:
    if config.data.gene_embeddings:
        raise ConfigError(f"{config.data.gene_embeddings}: gene-embedding files are not supported yet")
    return random_embeddings(perts, seed=0)


def run_experiment(
    config: ExperimentConfig,
    manager: PluginManager,
    *,
    log: Callable[[str], None] = lambda message: None,
) -> RunResult:
    started = time.perf_counter()
    rng = seed_everything(config.seed)
    device = resolve_device(config.device)

    data = load_screen(config.data, config.seed)
    split = load_split(config, data)
    log(f"data: {data.source}: {len(data.obs):,} cells, {data.n_features} features, "
        f"{len(data.groups)} perturbation groups; split: {split.description}")
    if not split.train or not split.test:
        raise DataError(f"{data.source}: the split leaves no training or no test groups")

    perts = data.perturbations
    table = load_embeddings(config, perts)
    matrix, missing = table.lookup(perts, config.data.missing_embedding)
    if missing:
        log(f"gene embeddings: {len(missing)} perturbed gene(s) without an embedding "
            f"({', '.join(missing[:5])}); policy {config.data.missing_embedding}")
    pert_embedding = dict(zip(perts, matrix))
    database = ResponseDatabase.from_data(data, split.train, np.stack([pert_embedding[p] for p, _ in split.train]))

    contexts = data.contexts
    ctx = BuildContext(
        n_genes=data.n_features, embed_dim=table.dim, n_contexts=len(contexts), n_perts=len(perts),
        gene_names=tuple(data.features), context_names=tuple(contexts), seed=config.seed,
        device=str(device),
    )
    build = lambda kind, choice: manager.get(kind, choice.name).build(component_params(choice, kind, manager), ctx)
    retriever = build("retriever", config.retriever)
    retriever.build(database.embeddings, database.meta)
    selector = build("selector", config.selector)
    generator = build("generator", config.generator).to(device)
    metrics = {choice.name: build("metric", choice) for choice in config.metrics}

    generator.fit(database)
    if generator.trainable:
        raise ConfigError(f"generator {config.generator.name!r} needs training, which this version cannot do yet")

    predictions = predict_groups(
        generator, data, split.test, pert_embedding=pert_embedding,
        context_index={c: i for i, c in enumerate(contexts)},
        pert_index={p: i for i, p in enumerate(perts)}, rng=rng, device=device,
    )
    long = score(predictions, metrics)
    summary = aggregate(long, metrics, seed=config.seed)

    run_dir = new_run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config.dump_yaml())
    long.to_csv(run_dir / "metrics.csv", index=False)
    retriever.save(run_dir / "retriever")
    info = {
        "ptrag_version": _version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(device),
        "data": data.source,
        "split": split.description,
        "n_test_groups": len(split.test),
        "components": {s: getattr(config, s).name for s in ("retriever", "selector", "generator")},
    }
    (run_dir / "metrics.json").write_text(json.dumps({"run": info, "metrics": summary}, indent=2))
    return RunResult(run_dir, config, long, summary)


def _version() -> str:
    from . import __version__

    return __version__
