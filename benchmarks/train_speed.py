"""Training speed of `state`, `vanilla-rag` and `ptrag` at the paper's size; prints figures.

Synthetic tensors (no data loading): hidden 128, cell_set_len 64, batch 64 (the paper's 64 x 64), 2000 genes, K 32,
a retrieval database of 1000 entries with 256-d gene embeddings. One step = forward, energy
loss (+ selector aux loss), backward, clip, AdamW. The retrieval+selection overhead is ptrag's
step time (including neighbour lookup and the per-epoch stage-1 search, amortised) over state's.

    python benchmarks/train_speed.py [--steps 15] [--batch 64] [--device cpu] [--threads N]
        [--set selector.scorer_hidden=32] [--variant h16=selector.scorer_hidden=16]
        [--variant evidence=preset:ptrag-evidence]

Every model is stepped in turn (round-robin) in one process, so a shared machine's load hits all
alike and the overheads are measured side by side. ``--variant LABEL=KEY=VALUE[,KEY=VALUE]`` adds
the ptrag preset with those overrides (``preset:NAME`` picks another preset) under LABEL.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ptrag.core.components.manager import build_manager
from ptrag.core.config import component_params, resolve_config
from ptrag.core.data.database import ResponseDatabase
from ptrag.core.hookspecs import BuildContext
from ptrag.core.interfaces import CellSetBatch
from ptrag.core.model.compose import PtragModel
from ptrag.core.model.neighbours import NeighbourTable
from ptrag.core.training.device import autocast, resolve_device
from ptrag.core.training.losses import set_loss


def database(n: int, e: int, g: int, rng: np.random.Generator) -> ResponseDatabase:
    """n entries: n/4 genes, each measured in the 4 cell lines (as in a few-shot screen)."""
    embeddings = np.repeat(rng.standard_normal((-(-n // 4), e)), 4, axis=0)[:n].astype(np.float32)
    return ResponseDatabase(perts=[f"G{i // 4}" for i in range(n)],
                            contexts=[("k562", "rpe1", "jurkat", "hepg2")[i % 4] for i in range(n)],
                            n_cells=np.full(n, 100),
                            embeddings=embeddings,
                            response=(rng.standard_normal((n, g)) * 0.1).astype(np.float32), control_mean={})


def build(manager, kind: str, choice, ctx: BuildContext):
    """The configured component of one kind, built for the benchmark's sizes."""
    return manager.get(kind, choice.name).build(component_params(choice, kind, manager), ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="cell sets per step (the paper's: 64)")
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--entries", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="override for the ptrag preset, e.g. --set selector.scorer_hidden=32 (repeatable)")
    ap.add_argument("--variant", action="append", default=[],
                    help="LABEL=KEY=VALUE[,KEY=VALUE]: one more model, the ptrag preset with these overrides "
                         "(preset:NAME instead of KEY=VALUE picks another preset)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    # one CPU thread: the process's CPU time, which other jobs on a shared machine barely disturb;
    # otherwise (threads, GPU) wall time
    single = device.type == "cpu" and torch.get_num_threads() == 1
    clock = time.process_time if single else time.perf_counter
    rng = np.random.default_rng(0)
    b, s, g, e, h = args.batch, args.cells, args.genes, 256, 128
    db = database(args.entries, e, g, rng)
    pert_embedding = dict(zip(db.perts, db.embeddings, strict=False))
    manager = build_manager(entry_points=False)
    print(f"train_speed: device={device} threads={torch.get_num_threads()} B={b} S={s} G={g} H={h} "
          f"K=32 database={args.entries} torch={torch.__version__} clock={'process CPU time' if single else 'wall'}"
          + (f" ptrag overrides: {' '.join(args.sets)}" if args.sets else ""))
    queries = list(zip(db.perts, db.contexts, strict=False))
    setups = {}
    models = {"state": ("state", []), "vanilla-rag": ("vanilla-rag", []), "ptrag": ("ptrag", args.sets)}
    for variant in args.variant:
        label, _, body = variant.partition("=")
        items = [x for x in body.split(",") if x]
        preset = next((x.removeprefix("preset:") for x in items if x.startswith("preset:")), "ptrag")
        models[label] = (preset, [*args.sets, *(x for x in items if not x.startswith("preset:"))])
    for label, (preset, sets) in models.items():
        torch.manual_seed(0)
        cfg = resolve_config(None, preset=preset, sets=sets, manager=manager)
        ctx = BuildContext(n_genes=g, embed_dim=e, hidden_dim=h, n_contexts=4, n_perts=args.entries,
                           context_names=("hepg2", "jurkat", "k562", "rpe1"), device=str(device))
        retriever = build(manager, "retriever", cfg.retriever, ctx)
        retriever.build(db.embeddings, None)
        generator = build(manager, "generator", cfg.generator, ctx)
        selector = build(manager, "selector", cfg.selector, ctx)
        model = PtragModel(generator, selector, db, hidden_dim=h,
                           context=cfg.model.context, context_names=list(ctx.context_names)).to(device)
        k = int(cfg.retriever.params.get("k", 0) or 0)
        table = NeighbourTable(retriever, db, pert_embedding, k, cfg.model.exclude_same_gene)
        t0 = time.perf_counter()
        table.add(queries)  # the per-epoch stage-1 search over every training query
        search_s = time.perf_counter() - t0
        setups[label] = (model, table, torch.optim.AdamW(model.parameters(), lr=1e-3), search_s, [])
    # round-robin, one step of each model in turn, so a shared machine's load hits all alike
    for step in range(args.warmup + args.steps):
        picks = rng.integers(0, len(queries), b)
        batch0 = CellSetBatch(
            ctrl=torch.from_numpy(rng.random((b, s, g), dtype=np.float32)),
            pert_emb=torch.from_numpy(db.embeddings[picks]), pert_index=torch.from_numpy(picks),
            context_index=torch.from_numpy(picks % 4), target=torch.from_numpy(rng.random((b, s, g), dtype=np.float32)),
            perts=[queries[i][0] for i in picks], contexts=[queries[i][1] for i in picks])
        for model, table, opt, _, times in setups.values():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = clock()
            batch = table.attach(batch0).to(device)
            with autocast(device):
                pred, sel = model(batch)
            zero = torch.zeros((), device=device)
            loss = set_loss("energy", pred.float(), batch.target) + sum(sel.aux_losses.values(), zero)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(clock() - t)
    results = {}
    epoch_steps = max(1, len(queries) // b)
    for preset, (_, _, _, search_s, times) in setups.items():
        step_s = float(np.median(times))
        amortised = step_s + search_s / epoch_steps
        results[preset] = amortised
        print(f"{preset:14s} {1 / amortised:7.2f} steps/s  {b * s / amortised:9.0f} cells/s  "
              f"(median step {step_s * 1000:.1f} ms; stage-1 search {search_s * 1000:.1f} ms per epoch of "
              f"{epoch_steps} steps)")
    for preset in [m for m in models if m != "state"]:
        print(f"retrieval+selection overhead {preset} vs state: "
              f"{100 * (results[preset] / results['state'] - 1):+.1f}% step time")


if __name__ == "__main__":
    main()
