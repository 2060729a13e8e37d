"""Training on several processes with torch.distributed (torchrun, gloo on CPU).

The 2-process runs start real `torchrun` process groups on the tiny built-in data; together they
take about half a minute on 2 CPU cores.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ptrag.core.data.cellsets import EpochSchedule, step_seed
from ptrag.core.runs.evaluate import merge_shards
from ptrag.core.training.distributed import SINGLE, Dist, broadcast, from_env, gather, on_main
from ptrag.core.training.interrupt import CRASH_ENV

ARGS = ["run", "--preset", "ptrag-evidence", "--steps", "12", "--device", "cpu", "--set", "data.synth_preset=tiny",
        "--set", "train.val_every=4", "--set", "compare=[]", "--set", "model.hidden_dim=16",
        "--set", "generator.n_layers=1", "--set", "data.cell_set_len=16", "--set", "train.batch_size=2"]


def torchrun(nproc: int, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "ptrag", *args]
    environ = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "full"
    done = torchrun(2, *ARGS, "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done


def test_a_two_process_run_records_its_world_size_and_global_batch(uninterrupted):
    out, done = uninterrupted
    run = json.loads((out / "metrics.json").read_text())["run"]
    assert run["world_size"] == 2 and run["global_batch"] == {"sets": 4, "cells": 64}
    assert done.stdout.strip().splitlines()[-1] == str(out)  # rank 0 alone prints
    assert done.stdout.count("ptrag run preset=") == 1
    # every held-out group predicted once (each rank predicted its share; rank 0 gathered them)
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics.groupby(["pert", "context"]).size().nunique() == 1
    assert len(metrics[["pert", "context"]].drop_duplicates()) == run["n_test_groups"]


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(uninterrupted, tmp_path):
    full, _ = uninterrupted
    out = tmp_path / "killed"
    killed = torchrun(2, *ARGS, "--out", str(out), env={CRASH_ENV: "4"})
    assert killed.returncode != 0 and not (out / "metrics.json").exists()
    resumed = torchrun(2, "run", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed at step 4" in resumed.stdout
    a, b = pd.read_csv(full / "metrics.csv"), pd.read_csv(out / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)


def test_a_two_process_checkpoint_resumes_in_one_process(tmp_path):
    out = tmp_path / "killed"
    killed = torchrun(2, *ARGS, "--out", str(out), env={CRASH_ENV: "8"})
    assert killed.returncode != 0
    from typer.testing import CliRunner

    from ptrag.cli.app import app

    result = CliRunner().invoke(app, ["run", "--resume", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "trained on 2 process(es) before, 1 now" in result.output
    assert json.loads((out / "metrics.json").read_text())["run"]["world_size"] == 1


def test_every_epoch_uses_each_group_once_across_the_ranks_and_steps_are_stateless():
    n, batch, world = 10, 2, 2
    schedules = [EpochSchedule(n, batch, seed=3, rank=r, world_size=world) for r in range(world)]
    assert schedules[0].steps_per_epoch == 3  # ceil(10 / 4)
    epoch0 = np.concatenate([s.groups(step) for step in range(3) for s in schedules])
    assert set(epoch0) == set(range(n)) and len(epoch0) == 12  # the last global batch wraps
    again = EpochSchedule(n, batch, seed=3, rank=1, world_size=world)
    assert np.array_equal(again.groups(5), schedules[1].groups(5))  # no history needed
    assert not np.array_equal(schedules[0].groups(0), schedules[0].groups(3))  # a new order each epoch
    assert step_seed(0, 5, 1) != step_seed(0, 5, 0) != step_seed(0, 6, 0)


def test_a_single_process_needs_no_process_group(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert from_env() == SINGLE and not SINGLE.enabled and SINGLE.is_main
    assert broadcast("x", SINGLE) == "x" and gather(1, SINGLE) == [1] and on_main(lambda: 7, SINGLE) == 7
    assert Dist(1, 3).shard(list(range(7))) == [1, 4]
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert from_env() == Dist(2, 4, 2)


def test_shards_of_predictions_merge_back_in_the_original_order():
    class P:
        def __init__(self, pert):
            self.pert, self.context = pert, "k562"

    groups = [P(f"g{i}") for i in range(5)]

    def trace(ps):
        return pd.DataFrame({"pert": [p.pert for p in ps for _ in range(2)], "context": "k562",
                             "rank": [0, 1] * len(ps)})

    parts = [(groups[r::2], trace(groups[r::2])) for r in range(2)]
    merged, merged_trace = merge_shards(parts)
    assert [p.pert for p in merged] == [f"g{i}" for i in range(5)]
    assert merged_trace.pert.tolist() == [f"g{i}" for i in range(5) for _ in range(2)]
