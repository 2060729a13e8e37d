"""Load time and peak memory of the data layer on the `large` built-in preset written to .h5ad.

    python benchmarks/data_load.py [--preset large] [--seed 0] [--keep FILE]

The file is written by a child process; a second, fresh child process loads it with
``read_screen`` and reports its peak RSS (``ru_maxrss``), so the figure is the loader's own.
The peak for the real release (643k x 2,000 float32, 5.1 GB raw) is extrapolated from the
measured bytes per matrix byte: the loader holds the matrix once, plus one row block and the
labels, so its overhead over the raw matrix shrinks as the file grows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REAL_CELLS, REAL_GENES = 643_000, 2_000


def _child_write(preset: str, seed: int, path: str) -> None:
    from ptrag.core.data.synth import synth_screen

    t = time.perf_counter()
    adata = synth_screen(preset, seed)
    made = time.perf_counter() - t
    adata.write_h5ad(path)
    print(json.dumps({"cells": adata.n_obs, "genes": adata.obsm["X_hvg"].shape[1], "synth_s": made,
                      "write_s": time.perf_counter() - t - made}))


def _child_read(path: str) -> None:
    import resource

    import numpy as np  # noqa: F401  (imports count towards the baseline, not the load)

    from ptrag.core.config import DataConfig
    from ptrag.core.data.loading import read_screen

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    data = read_screen(path, DataConfig(path=path))
    seconds = time.perf_counter() - t
    _ = data.groups  # group index built as training would
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"load_s": seconds, "peak_rss": peak, "baseline_rss": base, "matrix_bytes": data.X.nbytes,
                      "cells": len(data.obs)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="large")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="write the .h5ad here and keep it")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child[0] == "write":
            _child_write(args.child[1], int(args.child[2]), args.child[3])
        else:
            _child_read(args.child[1])
        return
    tmp = tempfile.TemporaryDirectory()
    path = args.keep or os.path.join(tmp.name, f"{args.preset}.h5ad")

    def run(*a: str) -> dict:
        proc = subprocess.run([sys.executable, __file__, "--child", *a], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"child {a[0]} failed:\n{proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    w = run("write", args.preset, str(args.seed), path)
    r = run("read", path)
    size = Path(path).stat().st_size
    load_overhead = r["peak_rss"] - r["baseline_rss"]
    ratio = r["peak_rss"] / r["matrix_bytes"]
    per_cell = (load_overhead - r["matrix_bytes"]) / r["cells"]  # labels, index, one block, amortised
    real_matrix = REAL_CELLS * REAL_GENES * 4
    real_peak = r["baseline_rss"] + real_matrix + per_cell * REAL_CELLS
    print(f"preset {args.preset} (seed {args.seed}): {w['cells']:,} cells x {w['genes']:,} genes; "
          f"synth {w['synth_s']:.1f} s, write {w['write_s']:.1f} s, file {size / 2**30:.2f} GiB")
    print(f"load (read_screen, dense float32 obsm['X_hvg']): {r['load_s']:.1f} s")
    print(f"matrix {r['matrix_bytes'] / 2**30:.2f} GiB; peak RSS {r['peak_rss'] / 2**30:.2f} GiB "
          f"(process baseline {r['baseline_rss'] / 2**30:.2f} GiB); peak / matrix = {ratio:.2f}x (target <= 2.5x); "
          f"loader's own (peak - baseline) / matrix = {load_overhead / r['matrix_bytes']:.2f}x")
    print(f"extrapolated for {REAL_CELLS:,} x {REAL_GENES:,} float32 ({real_matrix / 1e9:.1f} GB raw): peak "
          f"~{real_peak / 2**30:.2f} GiB = {real_peak / real_matrix:.2f}x the raw matrix "
          f"(baseline + matrix + {per_cell:.0f} B/cell measured above; extrapolated, not measured)")
    tmp.cleanup()


if __name__ == "__main__":
    main()
