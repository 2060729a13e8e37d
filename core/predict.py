"""Predict held-out groups through the whole model (retrieval -> selector -> generator).

Each group gets as many matched control cells as it has real cells (same cell line, same batch
where possible), cut into sets of at most ``cell_set_len`` cells, so predicted and real cells
are compared one-to-one in number. Alongside the predictions comes the retrieval trace: per
group and rank the candidate, its stage-1 score and its keep-weight (mean over cells).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .data.cellsets import CellSetSampler, Vocab, step_seed
from .data.database import ResponseDatabase
from .data.dataset import PerturbationData
from .data.split import Group
from .engine import autocast
from .errors import ConfigError, DataError
from .hookspecs import BuildContext
from .evaluate import GroupPrediction
from .model import NeighbourTable, PtragModel
from .progress import LoopProgress
from .outputs import TRACE_COLUMNS  # pert, context, rank, candidate_pert, candidate_context, stage1_score, keep_weight



@torch.no_grad()
def predict(
    model: PtragModel,
    sampler: CellSetSampler,
    groups: list[Group],
    neighbours: NeighbourTable,
    *,
    device: torch.device,
    seed: int | None = None,
    positions: list[int] | None = None,
    rng: np.random.Generator | None = None,
    database=None,
    log=lambda message: None,
) -> tuple[list[GroupPrediction], pd.DataFrame]:
    """``GroupPrediction`` per group and the retrieval trace DataFrame (columns TRACE_COLUMNS);
    progress (bar on a terminal, plain lines through ``log`` elsewhere) per group.

    With ``seed``, each group's draws (matched controls; torch's generator for stochastic models)
    come from (seed, its position in the full list: ``positions``, default 0, 1, ...), so a group's
    prediction does not depend on which other groups are predicted, or by which process. Without
    it, one ``rng`` is drawn from group after group."""
    model.eval()
    data: PerturbationData = sampler.data
    database = database if database is not None else neighbours.database
    s = sampler.cell_set_len
    out, trace, cells = [], [], 0
    with LoopProgress("predicting", len(groups), log=log) as progress:
        for done, (pert, context) in enumerate(groups, 1):
            if seed is not None:
                where = positions[done - 1] if positions is not None else done - 1
                rng = np.random.default_rng([seed, 2, where])
                torch.manual_seed(step_seed(seed, where, stream=2))
            real_idx = data.group_indices(pert, context)
            ctrl_idx = sampler.matched_controls(context, real_idx, rng)
            chunks = [ctrl_idx[i:i + s] for i in range(0, len(ctrl_idx), s)]
            preds, weight_sum, n_cells, coefs = [], None, 0, {}
            template = sampler.make_batch([(pert, context)], rng, with_target=False)
            for chunk in chunks:
                batch = replace(template, ctrl=torch.from_numpy(data.X[chunk])[None],
                                batch_index=sampler.batch_index_of([chunk]))
                batch = neighbours.attach(batch).to(device)
                with autocast(device):
                    pred, sel = model(batch)
                preds.append(pred[0].float().cpu().numpy())
                if sel.weights is not None:
                    w = sel.weights[0].float().sum(0).cpu()  # [K] summed over the chunk's cells
                    weight_sum = w if weight_sum is None else weight_sum + w
                coefs = {k: v[0].float().cpu() for k, v in sel.evidence.items()}  # per set: equal in every chunk
                n_cells += len(chunk)
            out.append(GroupPrediction(pert, context, np.concatenate(preds), data.X[real_idx],
                                       data.control_cells(context), ctrl_idx))
            scores, ids = neighbours.rows([(pert, context)])
            for rank, (score, i) in enumerate(zip(scores[0].tolist(), ids[0].tolist())):
                if i < 0:
                    continue
                row = {
                    "pert": pert, "context": context, "rank": rank,
                    "candidate_pert": database.perts[i], "candidate_context": database.contexts[i],
                    "stage1_score": float(score),
                    "keep_weight": float(weight_sum[rank] / n_cells) if weight_sum is not None else np.nan,
                }
                if coefs:  # an evidence selector weighs rather than keeps: kept = any non-zero coefficient
                    row.update({f"{k}_coef": float(v[rank]) for k, v in coefs.items()})
                    row["keep_weight"] = float(any(abs(float(v[rank])) > 1e-6 for v in coefs.values()))
                trace.append(row)
            cells += n_cells
            progress.update(done, cells_per_s=cells / max(progress.elapsed, 1e-9))
    columns = TRACE_COLUMNS + sorted({c for row in trace for c in row} - set(TRACE_COLUMNS))
    return out, pd.DataFrame(trace, columns=columns)


# --------------------------------------------------------------------------- saved runs


@dataclass
class LoadedRun:
    """A finished run folder rebuilt for prediction: config, model (best weights), retriever,
    retrieval database and the training vocabularies."""

    run_dir: Path
    config: Any
    model: PtragModel
    retriever: Any
    database: ResponseDatabase
    meta: dict[str, Any]
    device: torch.device


def load_run(run_dir: str | Path, manager: Any, device: str = "auto") -> LoadedRun:
    """Rebuild a run's model from ``config.yaml`` + ``checkpoint.pt`` + the saved retriever."""
    from .config import component_params, resolve_config
    from .engine import load_checkpoint, load_weights, resolve_device

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml); give the folder `ptrag run` printed last")
    if not (run_dir / "metrics.json").is_file():
        raise ConfigError(f"{run_dir}: the run has not finished (no metrics.json); continue it with "
                          f"ptrag run --resume {run_dir}")
    config = resolve_config(run_dir / "config.yaml", manager=manager)
    ck = load_checkpoint(run_dir / "checkpoint.pt")
    meta = ck["meta"]
    db = meta["database"]
    database = ResponseDatabase(perts=list(db["perts"]), contexts=list(db["contexts"]), n_cells=db["n_cells"],
                                embeddings=db["embeddings"], response=db["response"],
                                control_mean=dict(db["control_mean"]))
    dev = resolve_device(device)
    emb = meta["pert_embedding"]
    ctx = BuildContext(
        n_genes=len(meta["features"]), embed_dim=int(emb.shape[1]) if emb is not None else 0,
        hidden_dim=config.model.hidden_dim, n_contexts=len(meta["contexts"]), n_perts=len(meta["perts"]),
        n_batches=len(meta["batches"]), gene_names=tuple(meta["features"]),
        context_names=tuple(meta["contexts"]), seed=config.seed, device=str(dev),
    )
    build = lambda kind, choice: manager.get(kind, choice.name).build(component_params(choice, kind, manager), ctx)
    retriever = type(build("retriever", config.retriever)).load(run_dir / "retriever")
    generator = build("generator", config.generator)
    generator.fit(database)  # baselines keep plain-Python state too; buffers are overwritten below
    model = PtragModel(generator, build("selector", config.selector), database, hidden_dim=config.model.hidden_dim,
                       context=config.model.context, context_names=list(meta["contexts"]), nonnegative=config.model.nonnegative)
    load_weights(model, ck.get("best_model") or ck["model"], run_dir / "checkpoint.pt")
    return LoadedRun(run_dir, config, model.to(dev), retriever, database, meta, dev)


def predict_file(run: LoadedRun, path: str | Path, *, log=lambda message: None
                 ) -> tuple[list[GroupPrediction], pd.DataFrame, PerturbationData, list[dict]]:
    """Predict every perturbation group of a new .h5ad with a loaded run (:func:`predict_screen`)."""
    from .data.loading import load_screen

    data = load_screen(run.config.data.model_copy(update={"path": str(path)}))
    return predict_screen(run, data, log=log)


def predict_screen(run: LoadedRun, data: PerturbationData, *, log=lambda message: None
                   ) -> tuple[list[GroupPrediction], pd.DataFrame, PerturbationData, list[dict]]:
    """Predict every perturbation group of a loaded screen (a file, or an in-memory AnnData
    through ``adata_to_data``); also returns the drop records (``Split.drops``) of groups left out.

    The data must hold log-normalised expression with the run's features (same names and order)
    and only cell lines the run was trained on; genes new to the run get their embedding from the
    run's gene-embedding source under the run's data.missing_embedding policy (core/checks.py).
    """
    from .checks import apply_embedding_policy, embedding_users
    from .data.split import Split
    from .data.validation import require_expression
    from .experiment import load_embeddings

    config = run.config
    path = data.source  # the file's path, or what an in-memory screen is called
    require_expression(data)
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
    known = list(run.meta["perts"])
    pert_embedding = dict(zip(known, run.meta["pert_embedding"]))
    new = sorted({p for p, _ in groups} - set(known))
    drops: list[dict] = []
    if new:
        log(f"{len(new)} perturbation(s) new to the run ({', '.join(new[:5])})")
        asked = Split(train=[], test=groups, description=f"{path}: {len(groups)} groups")
        kept, vectors = apply_embedding_policy(
            asked, load_embeddings(config, new), new, policy=config.data.missing_embedding,
            max_dropped_test=config.data.max_dropped_test, users=embedding_users(run.retriever, run.model.generator),
            log=log)
        pert_embedding.update(vectors)
        groups, drops = kept.test, kept.drops
        if not groups:
            raise DataError(f"{path}: every group was dropped ({kept.summary()}); nothing to predict")
    vocab = Vocab(known + new, contexts, pert_embedding, list(run.meta["batches"]))  # unseen batches -> reserved row
    sampler = CellSetSampler(data, groups, vocab, cell_set_len=config.data.cell_set_len)
    k = int(config.retriever.params.get("k", 0) or 0)
    neighbours = NeighbourTable(run.retriever, run.database, pert_embedding, k, config.model.exclude_same_gene)
    preds, trace = predict(run.model, sampler, groups, neighbours, seed=config.seed, device=run.device, log=log)
    return preds, trace, data, drops
