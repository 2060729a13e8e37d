"""Retrieval back-ends: build time, queries/s (batch 1 and 256), memory and recall@k vs exact.

    python benchmarks/retrieval.py                      # the default plan (~15-20 min, 2 cores)
    python benchmarks/retrieval.py --sizes 1e3,1e4 --dims 384 --data clustered --backends exact,hnsw
    python benchmarks/retrieval.py --plan full          # every size x dim x data (needs > 24 GB at 1e6 x 1536)

Rows: one per (size, dim, data, back-end, search knob). ``qps@1`` runs single queries,
``qps@256`` batches of 256; ``index MB`` is the serialised index (the key matrix for exact),
``rss MB`` the growth of the process's resident memory while building. Recall@k is the fraction
of exact's top-k ids the back-end returns for the same queries (new points drawn like the data).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# the default plan: (size, dim, data) triples; 1e6 only at dim 384 on clustered data, and with
# the back-ends that can build it in minutes on 2 cores (10^6 x 1536 float32 alone is 6 GB)
DEFAULT_PLAN = [
    *[(n, 384, d) for n in (1_000, 10_000, 100_000) for d in ("random", "clustered")],
    *[(n, 1536, d) for n in (1_000, 10_000) for d in ("random", "clustered")],
    (1_000_000, 384, "clustered"),
]
BIG_BACKENDS = ("exact", "faiss-ivf", "hnsw")  # used at 1e6 in the default plan
ALL_BACKENDS = ("exact", "faiss-flat", "faiss-hnsw", "faiss-ivf", "hnsw")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_data(n: int, dim: int, kind: str, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys [n,dim] and queries [q,dim]; clustered = Gaussian blobs around sqrt(n) centres."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        keys = rng.standard_normal((n, dim), dtype=np.float32)
        queries = rng.standard_normal((n_queries, dim), dtype=np.float32)
        return keys, queries
    n_centres = max(10, int(np.sqrt(n)))
    centres = rng.standard_normal((n_centres, dim), dtype=np.float32)
    keys = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # chunks keep peak memory at one copy
        stop = min(n, start + 100_000)
        keys[start:stop] = centres[rng.integers(0, n_centres, stop - start)]
        keys[start:stop] += 0.5 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    queries = (centres[rng.integers(0, n_centres, n_queries)]
               + 0.5 * rng.standard_normal((n_queries, dim), dtype=np.float32))
    return keys, queries


def make_backend(name: str, n: int, args: argparse.Namespace):
    from ptrag.plugins.retrievers.exact import ExactRetriever
    from ptrag.plugins.retrievers.faiss_index import FaissParams, FaissRetriever
    from ptrag.plugins.retrievers.hnsw import HnswParams, HnswRetriever

    if name == "exact":
        return ExactRetriever("cpu", batch_size=256)
    if name == "faiss-flat":
        return FaissRetriever(FaissParams(index="flat"))
    if name == "faiss-hnsw":
        return FaissRetriever(FaissParams(index="hnsw", M=args.M, ef_construction=args.ef_construction))
    if name == "faiss-ivf":
        nlist = max(1, min(args.nlist or int(4 * np.sqrt(n)), n // 39))
        return FaissRetriever(FaissParams(index="ivf", nlist=nlist, nprobe=1))
    if name == "hnsw":
        return HnswRetriever(HnswParams(M=args.M, ef_construction=args.ef_construction, threads=args.threads))
    raise SystemExit(f"unknown back-end {name!r}; choose from {', '.join(ALL_BACKENDS)}")


def knob_settings(name: str, retriever, args: argparse.Namespace) -> list[tuple[str, callable]]:
    """(label, apply) pairs: the search-time knob sweep of an approximate back-end."""
    import faiss

    if name == "faiss-hnsw":
        def ef(v):
            return lambda: setattr(retriever, "params", retriever.params.model_copy(update={"ef_search": v}))
        return [(f"efSearch={v}", ef(v)) for v in args.ef]
    if name == "hnsw":
        def ef2(v):
            return lambda: setattr(retriever, "params", retriever.params.model_copy(update={"ef": v}))
        return [(f"ef={v}", ef2(v)) for v in args.ef]
    if name == "faiss-ivf":
        def probe(v):
            def apply():
                retriever.params = retriever.params.model_copy(update={"nprobe": v})
                faiss.extract_index_ivf(retriever.index).nprobe = min(v, retriever.nlist)
            return apply
        return [(f"nlist={retriever.nlist},nprobe={min(v, retriever.nlist)}", probe(v))
                for v in dict.fromkeys(min(v, retriever.nlist) for v in args.nprobe)]
    return [("", lambda: None)]


def index_mb(retriever) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        retriever.save(tmp)
        return sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20


def qps(retriever, queries: np.ndarray, batch: int, k: int, budget_s: float) -> float:
    done, start = 0, time.perf_counter()
    while True:
        lo = (done * batch) % len(queries) if batch < len(queries) else 0
        retriever.search(queries[lo:lo + batch], k)
        done += 1
        elapsed = time.perf_counter() - start
        if elapsed > budget_s or done * batch >= 4 * len(queries):
            return done * min(batch, len(queries)) / elapsed


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, truth, strict=False)]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", choices=["default", "full"], default="default")
    ap.add_argument("--sizes", help="comma list, e.g. 1e3,1e4 (overrides the plan)")
    ap.add_argument("--dims", default="384,1536")
    ap.add_argument("--data", default="random,clustered")
    ap.add_argument("--backends", default=",".join(ALL_BACKENDS))
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--queries", type=int, default=256, help="queries for recall and qps@256")
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--ef", default="64,128,256", help="efSearch sweep for HNSW back-ends")
    ap.add_argument("--nlist", type=int, default=0, help="IVF clusters; 0 = 4*sqrt(N)")
    ap.add_argument("--nprobe", default="8,32,128", help="nprobe sweep for IVF")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for every back-end (1: on a shared machine 2-thread OpenMP stalls)")
    ap.add_argument("--budget", type=float, default=2.0, help="seconds per throughput measurement")
    ap.add_argument("--max-gb", type=float, default=8.0, help="skip configurations whose keys exceed this")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.ef = [int(v) for v in args.ef.split(",")]
    args.nprobe = [int(v) for v in args.nprobe.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)

    dims = [int(d) for d in args.dims.split(",")]
    kinds = [d for d in args.data.split(",") if d]
    if args.sizes:
        plan = [(int(float(n)), d, kind) for n in args.sizes.split(",") for d in dims for kind in kinds]
    elif args.plan == "full":
        plan = [(n, d, kind) for n in (1_000, 10_000, 100_000, 1_000_000) for d in dims for kind in kinds]
    else:
        plan = [p for p in DEFAULT_PLAN if p[1] in dims and p[2] in kinds]
    print(f"# ptrag retrieval benchmark: k={args.k}, {args.queries} queries, threads={args.threads}, "
          f"cpus={os.cpu_count()}, torch {torch.__version__}, faiss {faiss.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    header = f"{'N':>9} {'dim':>5} {'data':>9} {'backend':>10} {'knob':>22} {'build s':>8} {'qps@1':>9} " \
             f"{'qps@256':>9} {'index MB':>9} {'rss MB':>8} {'recall@' + str(args.k):>9}"
    print(header)
    print("-" * len(header), flush=True)
    skipped = []
    for n, dim, kind in plan:
        if n * dim * 4 / 2**30 > args.max_gb:
            skipped.append(f"{n}x{dim} {kind} (keys {n * dim * 4 / 2**30:.1f} GB > --max-gb)")
            continue
        keys, queries = make_data(n, dim, kind, args.queries, args.seed)
        use = [b for b in backends if args.sizes or n < 1_000_000 or b in BIG_BACKENDS]
        skipped += [f"{n}x{dim} {kind} {b} (default plan)" for b in backends if b not in use]
        truth = None
        exact_qps = None
        for name in (["exact"] if "exact" not in use else []) + use:
            gc.collect()
            before = rss_mb()
            retriever = make_backend(name, n, args)
            t0 = time.perf_counter()
            retriever.build(keys)
            build_s = time.perf_counter() - t0
            grown = rss_mb() - before
            size = index_mb(retriever)
            if name == "exact" and truth is None:
                truth = retriever.search(queries, args.k).ids.numpy()
                if "exact" not in use:
                    del retriever
                    continue
            for label, apply in knob_settings(name, retriever, args):
                apply()
                ids = retriever.search(queries, args.k).ids.numpy()
                q1 = qps(retriever, queries, 1, args.k, args.budget)
                q256 = qps(retriever, queries, 256, args.k, args.budget)
                rec = recall(ids, truth)
                if name == "exact":
                    exact_qps = q256
                speed = f"  ({q256 / exact_qps:.1f}x exact@256)" if exact_qps and name != "exact" else ""
                print(f"{n:>9} {dim:>5} {kind:>9} {name:>10} {label:>22} {build_s:>8.2f} {q1:>9.0f} "
                      f"{q256:>9.0f} {size:>9.1f} {grown:>8.0f} {rec:>9.4f}{speed}", flush=True)
            del retriever
        del keys, queries
    if skipped:
        print("# skipped: " + "; ".join(skipped))


if __name__ == "__main__":
    sys.exit(main())
