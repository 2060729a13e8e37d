"""What the run-folder and data checks cost: the value checks made while the matrix is read
(NaN/inf, negatives, non-integer values, library sizes) and the data fingerprint of a run.

    python benchmarks/run_folder_checks.py [--cells 200000] [--genes 2000] [--repeats 3]

Prints, for a random log1p-like float32 matrix of that size, the seconds per full pass of
``ValueCheck.update`` over 8,192-row blocks (what loading adds to each block), the same pass
without the checks this work added (non-integer count and library sizes), and the seconds of
``data_fingerprint`` (4,096 evenly spaced rows hashed, plus the labels). Best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from ptrag.core.data.validation import ValueCheck
from ptrag.core.runs.fingerprints import data_fingerprint

BLOCK = 8192


class _Before(ValueCheck):
    """ValueCheck as it was: NaN/inf, negatives, range and zeros only."""

    def update(self, block, cell_names):
        finite = np.isfinite(block)
        if not finite.all():
            block = np.where(finite, block, 0)
        self.negative += int((block < 0).sum())
        self.vmin = min(self.vmin, float(block.min()))
        self.vmax = max(self.vmax, float(block.max()))
        self._zeros += int((block == 0).sum())
        self._values += block.size


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=200_000)
    ap.add_argument("--genes", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = np.log1p(rng.poisson(0.6, size=(args.cells, args.genes)).astype(np.float32) * 2.3).astype(np.float32)
    names = pd.Index([f"c{i}" for i in range(args.cells)])

    def scan(kind):
        check = kind("X", "bench")
        for start in range(0, args.cells, BLOCK):
            check.update(X[start:start + BLOCK], names[start:start + BLOCK])
        return check

    before, after = best(lambda: scan(_Before), args.repeats), best(lambda: scan(ValueCheck), args.repeats)
    assert scan(ValueCheck).expression_problem() is None

    class Data:  # what data_fingerprint reads
        pass

    data = Data()
    data.X, data.features, data.source = X, [f"g{j}" for j in range(args.genes)], "bench"
    data.obs = pd.DataFrame({"pert": pd.Categorical(rng.integers(0, 500, args.cells).astype(str)),
                             "context": pd.Categorical(rng.integers(0, 4, args.cells).astype(str))}, index=names)
    fingerprint = best(lambda: data_fingerprint(data), args.repeats)
    gb = X.nbytes / 1e9
    print(f"matrix {args.cells:,} x {args.genes:,} float32 ({gb:.2f} GB), best of {args.repeats}")
    print(f"value checks per full pass: {after:.2f} s with this work's checks, {before:.2f} s without "
          f"(+{after - before:.2f} s, {after / gb:.2f} s/GB)")
    print(f"data fingerprint (4,096 sampled rows + labels): {fingerprint:.2f} s")


if __name__ == "__main__":
    main()
