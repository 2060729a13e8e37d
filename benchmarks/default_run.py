"""Wall time of the default ``ptrag run`` (the README's first command) on the built-in data.

    python benchmarks/default_run.py [--preset ptrag] [--data-preset demo] [--seed 0] [--keep DIR]
                                     [--set KEY=VALUE ...]

Runs ``ptrag run`` as a user would, in a fresh child process, into a new folder, and prints the
total wall time, each run's own time (the main run and every comparison, from their metrics.json),
where each learned run stopped and why, the size of the run folder on disk (as ``du``: a file
hard-linked from several runs of the tree counts once) and the bottom and verdict lines. The
targets: the default run within 10 minutes on 2 CPU cores (take the figure on a quiet machine:
other processes on the cores slow the single-threaded training runs down roughly in proportion),
and its folder, report included, under 60 MB.

Measured (demo data, seed 0, 2 CPU cores shared with other work, 2026-12-06): the folder was
206 MB before issue 27 (real.h5ad stored 7 times, a 4 MB checkpoint per baseline, optimiser
states kept) and is 53.6 MB since, its report included (docs/model.md, "The default ptrag run").
Quiet machine, 2026-12-07: 173 s in all (ptrag 74 s, state 64 s, ptrag-evidence 9 s), 54.9 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 600
TARGET_MB = 60


def disk_mb(folder: Path) -> tuple[float, float]:
    """(on disk, as du counts it: each file once however many runs link it; the sum of every
    run's files, as copies would take) in MB of 2**20 bytes, as ``du -sh`` prints them."""
    seen, disk, apparent = set(), 0, 0
    for path in folder.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        st = path.stat()
        apparent += st.st_size
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            disk += st.st_blocks * 512
    return disk / 2**20, apparent / 2**20


def _runs(folder: Path) -> list[tuple[str, dict]]:
    """(name, metrics.json's run section) of the main run and each comparison, in folder order."""
    found = [(f"{folder.name} (main)", folder)] + [(p.name, p) for p in sorted((folder / "compare").glob("*"))
                                                 if (p / "metrics.json").is_file()]
    return [(name, json.loads((p / "metrics.json").read_text())["run"]) for name, p in found]


def _row(name: str, run: dict) -> str:
    training = run.get("training") or {}
    took = run.get("seconds")
    stopped = f"stopped at step {training.get('steps')} (best {training.get('best_step')})" \
        if training.get("steps") else ""
    return f"  {name:<24} {f'{took:.0f} s' if took else '':>7}  {stopped}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default=None, help="default: the default preset (as `ptrag run`)")
    parser.add_argument("--data-preset", default=None, help="data.synth_preset; default: the built-in default")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="write the run here and keep it")
    parser.add_argument("--set", action="append", default=[], dest="sets")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "run"
        exe = shutil.which("ptrag") or str(Path(sys.executable).with_name("ptrag"))
        command = [exe, "run", "--out", str(out)]
        command += ["--preset", args.preset] if args.preset else []
        command += ["--set", f"data.synth_preset={args.data_preset}"] if args.data_preset else []
        command += ["--seed", str(args.seed)] if args.seed is not None else []
        for item in args.sets:
            command += ["--set", item]
        print("command: ptrag", " ".join(command[1:]), flush=True)
        print(f"cpu cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}", flush=True)
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"ptrag run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        print(f"total wall time: {wall:.0f} s ({wall / 60:.1f} min); target {TARGET_S / 60:.0f} min: "
              f"{'within' if wall <= TARGET_S else 'OVER'}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        for name, run in _runs(out):
            print(_row(name, run))
        disk, copies = disk_mb(out)
        print(f"run folder on disk: {disk:.1f} MB ({copies:.1f} MB if every run kept its own copies); target "
              f"{TARGET_MB} MB: {'within' if disk < TARGET_MB else 'OVER'}")
        for line in done.stdout.splitlines():
            if line.startswith(("retrieval vs best baseline:", "Best on this split")):
                print(" ", line)


if __name__ == "__main__":
    main()
