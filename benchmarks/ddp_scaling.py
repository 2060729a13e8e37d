"""Training throughput on 1 and N processes (torchrun, gloo on CPU / NCCL on GPU); prints figures.

Each configuration is a real `ptrag run` started by torchrun on the built-in data, with one torch
thread per process, the same per-process batch (so N processes train on an N-times larger global
batch), and no comparator runs. Throughput is training steps and cells per second from the run's
own clock (metrics.json: training.seconds, which excludes start-up, data loading and prediction).
Scaling efficiency = cells/s on N processes / (N x cells/s on one).

    python benchmarks/ddp_scaling.py [--preset state] [--nproc 1 2] [--steps 200] [--data-preset demo]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(nproc: int, args: argparse.Namespace, out: Path) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "ptrag", "run", "--preset", args.preset, "--steps", str(args.steps), "--device", args.device,
               "--out", str(out), "--set", "compare=[]", "--set", f"data.synth_preset={args.data_preset}",
               "--set", "train.threads=1", "--set", f"train.val_every={args.steps}", "--set", "train.patience=0",
               *sum((["--set", s] for s in args.sets), [])]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    info = json.loads((out / "metrics.json").read_text())["run"]
    training = info["training"]
    steps_s = training["steps"] / training["seconds"]
    return {"nproc": nproc, "steps_per_s": steps_s, "cells_per_s": steps_s * info["global_batch"]["cells"],
            "global_batch": info["global_batch"]["cells"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="state")
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-preset", default="demo")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set overrides (repeatable)")
    args = ap.parse_args()
    print(f"ddp_scaling: preset={args.preset} steps={args.steps} device={args.device} data={args.data_preset} "
          f"(1 torch thread per process; {os.cpu_count()} CPU cores)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nproc:
            rows.append(run(n, args, Path(tmp) / f"n{n}"))
            r = rows[-1]
            print(f"{n} process(es): {r['steps_per_s']:7.2f} steps/s  {r['cells_per_s']:9.0f} cells/s "
                  f"(global batch {r['global_batch']} cells)")
    base = next((r for r in rows if r["nproc"] == 1), None)
    if base:
        for r in rows:
            if r["nproc"] > 1:
                eff = r["cells_per_s"] / (r["nproc"] * base["cells_per_s"])
                print(f"scaling efficiency at {r['nproc']} processes: {100 * eff:.0f}% "
                      f"(speed-up {r['cells_per_s'] / base['cells_per_s']:.2f}x in cells/s)")


if __name__ == "__main__":
    main()
