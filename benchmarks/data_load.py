"""Load time and peak memory of each expression storage mode on a >= 600k-cell built-in screen.

    python benchmarks/data_load.py [--cells 600000] [--preset large] [--seed 0]
                                   [--modes float32,float16,backed] [--steps 30] [--keep FILE | --file FILE]

The file: copies of the built-in ``large`` preset (seeds seed, seed+1, ...) until ``--cells``,
copy k's cell lines named ``<line>-k``, so each line is one coherent synthetic screen (columns of
copy k are its own seed's read-out genes; the names in ``var`` are seed 0's). It is written as
anndata writes a dense ``obsm``: one contiguous float32 dataset, filled block by block (the writer
holds one preset copy, never the whole matrix). ``--cells 0`` writes one copy.

Each figure comes from a fresh child process (``ru_maxrss``, so peaks are the process's own):
- load: ``read_screen`` in each mode; its peak RSS over the float32 matrix; then the time to
  draw 50 training batches (16 cell sets x 64 cells, perturbed + matched control cells);
- train: a short ``state`` run on the file in each mode (``--steps`` steps, few-shot split with
  5% of one line's genes held out, prediction and metrics on those, run folder written), and
  its peak RSS over the float32 matrix: "training must not need more than ~1.5x the block".
The file is deleted at the end unless ``--keep``; ``--file`` reuses one written before.
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

MODES = {"float32": [], "float16": ["data.dtype=float16"], "backed": ["data.backed=true"]}
BLOCK = 16384
GiB = 2 ** 30


def _rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child_write(preset: str, seed: int, cells: int, path: str) -> None:
    """Copies of a preset, written block by block into one contiguous float32 obsm['X_hvg']."""
    import anndata as ad
    import h5py
    import numpy as np
    import pandas as pd

    from ptrag.core.data.synth import synth_screen

    t = time.perf_counter()
    raw = path + ".rows"  # the copies' rows, appended; the dataset's size is known only at the end
    obs_parts, var, n, k = [], None, 0, 0
    with open(raw, "wb") as fh:
        while k == 0 or n < cells:
            a = synth_screen(preset, seed + k)
            obs = a.obs.copy()
            if k:
                obs["cell_line"] = [f"{c}-{k}" for c in obs["cell_line"].astype(str)]
                obs["gem_group"] = [f"{g}-{k}" for g in obs["gem_group"].astype(str)]
                obs.index = [f"{i}-{k}" for i in obs.index]
            obs_parts.append(obs)
            var = a.var if var is None else var
            a.obsm["X_hvg"].tofile(fh)
            n, k = n + a.n_obs, k + 1
            del a
    synth_s = time.perf_counter() - t
    obs = pd.concat(obs_parts)
    for col in obs:
        obs[col] = pd.Categorical(obs[col].astype(str))
    ad.AnnData(obs=obs, var=var).write_h5ad(path)
    g = len(var)
    with h5py.File(path, "a") as f, open(raw, "rb") as fh:
        ds = f["obsm"].create_dataset("X_hvg", shape=(n, g), dtype="float32")  # contiguous, as anndata's
        ds.attrs["encoding-type"], ds.attrs["encoding-version"] = "array", "0.2.0"
        for start in range(0, n, BLOCK):
            block = np.fromfile(fh, dtype=np.float32, count=min(BLOCK, n - start) * g).reshape(-1, g)
            ds[start:start + len(block)] = block
    os.remove(raw)
    print(json.dumps({"cells": n, "genes": g, "copies": k, "synth_s": synth_s,
                      "write_s": time.perf_counter() - t - synth_s, "peak_rss": _rss()}))


def _config(path: str, mode: str, extra: list[str]):
    from ptrag.core.config import resolve_config

    return resolve_config(None, preset="state", sets=[f"data.path={path}", *MODES[mode], *extra])


def _child_load(path: str, mode: str) -> None:
    import numpy as np
    import torch  # noqa: F401  (imports count towards the baseline, not the load)

    from ptrag.core.data.cellsets import CellSetSampler, Vocab
    from ptrag.core.data.loading import read_screen

    base = _rss()
    cfg = _config(path, mode, []).data
    t = time.perf_counter()
    data = read_screen(path, cfg)
    _ = data.groups  # group index built as training would
    load_s = time.perf_counter() - t
    peak = _rss()
    emb = {p: np.zeros(8, np.float32) for p in data.perturbations}
    sampler = CellSetSampler(data, data.groups, Vocab(data.perturbations, data.contexts, emb), cell_set_len=64)
    rng = np.random.default_rng(0)
    sampler.sample(16, rng)
    t = time.perf_counter()
    for _ in range(50):
        sampler.sample(16, rng)
    batch_ms = (time.perf_counter() - t) / 50 * 1e3
    print(json.dumps({"load_s": load_s, "peak_rss": peak, "baseline_rss": base, "held_bytes": int(data.X.nbytes),
                      "cells": len(data.obs), "genes": data.n_features, "batch_ms": batch_ms}))


def _child_train(path: str, mode: str, steps: int, out: str) -> None:
    import torch  # noqa: F401

    from ptrag.core.components.manager import build_manager
    from ptrag.core.config import validate_components
    from ptrag.core.runs.experiment import run_experiment

    base = _rss()
    manager = build_manager(entry_points=False)
    cfg = validate_components(_config(path, mode, [
        f"train.steps={steps}", f"train.val_every={steps}", "compare=[]", "data.test_fraction=0.05",
        "data.val_fraction=0.02", f"output.dir={out}"]), manager)
    marks = {}
    t = time.perf_counter()
    result = run_experiment(cfg, manager, log=lambda m: marks.setdefault(m.split(":")[0], time.perf_counter() - t))
    print(json.dumps({"total_s": time.perf_counter() - t, "load_s": marks.get("data"),
                      "train_s": result.training["seconds"], "test_groups": int(result.metrics.groupby(
                          ["pert", "context"]).ngroups), "peak_rss": _rss(), "baseline_rss": base}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=600_000, help="at least this many cells (0: one preset copy)")
    ap.add_argument("--preset", default="large")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--steps", type=int, default=30, help="training steps of the short run (0: no training run)")
    ap.add_argument("--keep", help="write the .h5ad here and keep it")
    ap.add_argument("--file", help="use this file (written by --keep before) instead of writing one")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "write":
            _child_write(rest[0], int(rest[1]), int(rest[2]), rest[3])
        elif kind == "load":
            _child_load(rest[0], rest[1])
        else:
            _child_train(rest[0], rest[1], int(rest[2]), rest[3])
        return
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        sys.exit(f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES)}")
    tmp = tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp"))

    def run(*a: str) -> dict:
        proc = subprocess.run([sys.executable, __file__, "--child", *map(str, a)], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"child {a[0]} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    path = args.file or args.keep or os.path.join(tmp.name, "screen.h5ad")
    if not args.file:
        w = run("write", args.preset, args.seed, args.cells, path)
        print(f"wrote {w['cells']:,} cells x {w['genes']:,} genes ({w['copies']} copies of preset {args.preset}, "
              f"seeds {args.seed}..{args.seed + w['copies'] - 1}): synth {w['synth_s']:.0f} s, write "
              f"{w['write_s']:.0f} s, writer peak RSS {w['peak_rss'] / GiB:.2f} GiB; "
              f"file {Path(path).stat().st_size / GiB:.2f} GiB")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (shared: other "
          f"processes run too); python {sys.version.split()[0]}")
    rows = []
    for mode in modes:
        r = run("load", path, mode)
        matrix = r["cells"] * r["genes"] * 4
        rows.append((mode, r, matrix))
        print(f"load {mode:8s}: {r['load_s']:6.1f} s; peak RSS {r['peak_rss'] / GiB:5.2f} GiB = "
              f"{r['peak_rss'] / matrix:.2f}x the float32 matrix ({matrix / GiB:.2f} GiB; process baseline "
              f"{r['baseline_rss'] / GiB:.2f} GiB); expression held {r['held_bytes'] / GiB:.2f} GiB; "
              f"one batch of 16 x 64 cells {r['batch_ms']:.1f} ms")
    if args.steps:
        for mode, r, matrix in rows:
            t = run("train", path, mode, args.steps, os.path.join(tmp.name, f"run-{mode}"))
            print(f"train {mode:8s}: state, {args.steps} steps + prediction of {t['test_groups']} held-out groups: "
                  f"{t['total_s']:.0f} s (data {t['load_s']:.0f} s, training {t['train_s']:.0f} s); peak RSS "
                  f"{t['peak_rss'] / GiB:.2f} GiB = {t['peak_rss'] / matrix:.2f}x the float32 matrix, "
                  f"{t['peak_rss'] / r['held_bytes']:.2f}x the expression held")
    tmp.cleanup()


if __name__ == "__main__":
    main()
