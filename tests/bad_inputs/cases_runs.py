"""Bad-input cases of runs: training that diverges, folders another process holds, and what a
failed run leaves behind (nothing it made; every file that was there before).

The divergence cases use real settings (a learning rate of 1e6: the weights are NaN after one
step) and, for what real models do not do on cue (diverge after an improvement, NaN only when
predicting), the ``late-nan`` generator of tests/fixtures/diverging. The lock cases need a live
holder: :func:`prepare` starts one process that holds the ``locked*`` folders until this
interpreter exits (``atexit``), and writes a fixed holder record (pid 4242 on lab-host) into
their sidecars so the documented message does not change from one run to the next;
tests/test_lock.py checks the message with the real pid.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ptrag.core.training.interrupt import crash_after

from .case import PM, SMALL, TINY, Case, fixture_on_path

HUGE = ["--steps", "6", "--set", "train.val_every=2", "--set", "train.lr=1e6"]  # NaN weights after one step
NO_CLIP = ["--set", "train.grad_clip=0"]
LATE = ["--preset", "state", "--generator", "late-nan", *TINY, "--set", "data.cell_set_len=8", "--set",
        "train.batch_size=2", "--set", "train.warmup_steps=1", "--set", "compare=[]", "--device", "cpu",
        "--steps", "8", "--set", "train.val_every=2"]
#: what the live holder writes as its record, so the documented message is the same in every run
HOLDER = {"pid": 4242, "host": "lab-host", "since": "2026-01-01T12:03:00", "command": "ptrag run --out ..."}
BUSY = "another ptrag process (pid 4242 on host lab-host, since 2026-01-01 12:03) is running in this folder"

CASES = [
    # ---------------------------------------------------------------- divergence
    Case("run-diverges-without-clipping", ["run", "--preset", "state", *SMALL, *HUGE, *NO_CLIP, "--out", "{new}"],
         "training diverged at step 2 (non-finite training loss) before any validation improved on the untrained "
         "start, so there are no weights to predict with; lower train.lr (now 1e+06) or set train.grad_clip"),
    Case("run-diverges-despite-clipping", ["run", "--preset", "state", *SMALL, *HUGE, "--out", "{new}"],
         "no weights to predict with; lower train.lr (now 1e+06)",
         why="clipping bounds the gradient, not Adam's step: only the learning rate is named"),
    Case("run-diverges-in-bf16", ["run", "--preset", "state", *SMALL, *HUGE, "--set", "train.precision=bf16",
                                  "--out", "{new}"], "or set train.precision=float32 (now bf16)"),
    Case("run-diverges-ptrag", ["run", "--preset", "ptrag", *SMALL, *HUGE, *NO_CLIP, "--out", "{new}"],
         "training diverged at step 2 (non-finite training loss)"),
    Case("run-diverges-vanilla-rag", ["run", "--preset", "vanilla-rag", *SMALL, *HUGE, *NO_CLIP, "--out", "{new}"],
         "training diverged at step 2 (non-finite validation energy)",
         why="the training loss is still finite; the first validation is not"),
    Case("run-diverges-keeps-a-baseline-start", ["run", "--preset", "ptrag-evidence", *SMALL, *HUGE, *NO_CLIP,
                                                 "--out", "{new}"],
         "predictions use the untrained start (step 0), which this generator declares a baseline", code=0),
    Case("run-diverges-after-improving", ["run", *LATE, "--set", "train.lr=0.05", "--out", "{new}"],
         "diverged at step 4 (non-finite training loss); predictions use the weights of step 2", code=0,
         plugins="diverging"),
    Case("run-nan-validation-after-improving", ["run", *LATE, "--set", "train.lr=0.05", "--set",
                                                "generator.nan_in=eval", "--out", "{new}"],
         "diverged at step 4 (non-finite validation energy); predictions use the weights of step 2", code=0,
         plugins="diverging", why="a NaN validation never becomes the best"),
    Case("run-nan-validation-before-improving", ["run", *LATE, "--set", "train.lr=0.05", "--set",
                                                 "generator.nan_in=eval", "--set", "generator.nan_after=1",
                                                 "--out", "{new}"],
         "training diverged at step 2 (non-finite validation energy) before any validation improved",
         plugins="diverging"),
    Case("run-nan-predictions", ["run", *LATE, "--set", "generator.nan_in=predict", "--out", "{new}"],
         "predicted non-finite values (NaN or inf) for 9 of 9 held-out group(s)", plugins="diverging",
         why="finite weights, NaN cells: nothing is written"),
    Case("run-nan-from-the-untrained-start", ["run", *LATE, "--set", "generator.nan_in=eval", "--set",
                                              "generator.nan_after=-1", "--out", "{new}"],
         "broke its contract: forward predicted NaN or inf cells", plugins="diverging",
         why="before any training step a NaN is the plugin's, not a divergence"),
    Case("resume-diverges-keeps-its-checkpoint", ["run", "--resume", "{killed_late}"],
         "training diverged at step 4 (non-finite training loss)", plugins="diverging",
         why="the checkpoint of step 2 and the log stay as they were"),
    Case("ablate-run-diverges", ["ablate", "{grid_huge}", "--out", "{new}"],
         "state-s0: training diverged at step 2 (non-finite training loss)"),
    # ---------------------------------------------------------------- another process holds the folder
    Case("run-into-a-locked-folder", ["run", *PM, "--out", "{locked}"], BUSY),
    Case("run-into-a-locked-finished-run", ["run", *PM, "--out", "{locked_run}"], BUSY,
         why="the lock is checked before what the folder holds"),
    Case("resume-a-locked-run", ["run", "--resume", "{locked_killed}"], f"locked_killed: {BUSY}"),
    Case("run-locked-by-an-unrecorded-holder", ["run", *PM, "--out", "{locked_anonymous}"],
         "another ptrag process (its pid is not recorded yet) is running in this folder"),
    Case("predict-into-a-locked-folder", ["predict", "--run", "{run_pm}", "--data", "{tiny}", "--out", "{locked}"],
         BUSY),
    Case("ablate-into-a-locked-folder", ["ablate", "{grid}", "--out", "{locked}"], BUSY),
    Case("ablate-with-a-locked-run", ["ablate", "{grid}", "--out", "{locked_grid}"], f"control-s0: {BUSY}"),
    Case("report-a-locked-finished-run", ["report", "{locked_run}", "--out", "{new}"], "report.html", code=0,
         why="reading a folder needs no lock"),
    Case("run-after-the-holder-died", ["run", *PM, "--out", "{stale}"], "pert-mean: 9 held-out perturbations",
         code=0, why="the OS released the dead process's lock; its stale record is overwritten"),
    # ---------------------------------------------------------------- what a failed run leaves
    Case("run-fails-in-an-empty-folder", ["run", "--preset", "state", *SMALL, *HUGE, *NO_CLIP, "--out", "{empty}"],
         "training diverged at step 2", why="the folder stays, empty"),
    Case("run-fails-in-new-nested-folders", ["run", "--preset", "state", *SMALL, *HUGE, *NO_CLIP, "--out",
                                             "{new}/a/b"], "training diverged at step 2",
         why="every folder it created goes"),
    Case("overwrite-fails-before-clearing", ["run", *PM, "--data", "{nan}", "--out", "{run_pm}", "--overwrite"],
         "NaN/inf value(s)", why="the old run is cleared only once the new one's data is read"),
    Case("resume-on-a-missing-device", ["run", "--resume", "{killed}", "--device", "mps"],
         "device 'mps' requested but it is not available", why="the checkpoint stays"),
]


# --------------------------------------------------------------------------- the live holder

_HOLD = """
import json, os, sys, time
from pathlib import Path
from ptrag.core.runs.lock import HOLDER, acquire
parent, record = os.getppid(), sys.argv[1]
for arg in sys.argv[2:]:
    folder, _, how = arg.partition("=")
    acquire(Path(folder))
    if how == "anonymous":
        (Path(folder) / HOLDER).unlink()
    elif how != "dies":
        (Path(folder) / HOLDER).write_text(record)
if any(arg.endswith("=dies") for arg in sys.argv[2:]):
    os._exit(0)  # as if killed: the OS releases the lock, the files stay
print("held", flush=True)
while os.getppid() == parent:  # until the tests end (or the process that started it dies)
    time.sleep(0.2)
"""


def hold(*folders: str) -> subprocess.Popen | None:
    """A separate process holding ``folders`` (``path=anonymous``: no holder record; ``path=dies``:
    it exits at once, leaving a stale lock file and record); stopped when this interpreter exits."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, json.dumps(HOLDER), *folders], stdout=subprocess.PIPE,
                            text=True)
    if any(f.endswith("=dies") for f in folders):
        assert proc.wait(60) == 0
        return None
    assert proc.stdout.readline().strip() == "held"

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    atexit.register(stop)
    return proc


# --------------------------------------------------------------------------- prepare


def _killed_late(root: Path) -> str:
    """A late-nan run killed after its checkpoint of step 2 (lr 10: no validation beats the start)."""
    from ptrag.core.components.manager import build_manager
    from ptrag.core.config import resolve_config
    from ptrag.core.runs.experiment import run_experiment

    with fixture_on_path("diverging"):
        manager = build_manager()
        cfg = resolve_config(None, preset="state", manager=manager, components={"generator": "late-nan"}, sets=[
            "data.synth_preset=tiny", "data.cell_set_len=8", "train.batch_size=2", "train.warmup_steps=1",
            "compare=[]", "device=cpu", "train.steps=8", "train.val_every=2", "train.lr=10",
            f"output.dir={root / 'killed_late'}"])
        with crash_after(2), pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, manager)
    return str(root / "killed_late")


def prepare(root: Path, env: dict[str, str]) -> None:
    """The files the cases above point at, named in ``env`` (after cases_core's: run_pm, killed, grid)."""
    small = [s for s in SMALL if s not in ("--set", "--device", "cpu")]
    grid = {"base": {"metrics": ["mse"]}, "seeds": [0], "runs": [
        {"preset": "state", "set": [*small, "device=cpu", "train.steps=6", "train.val_every=2", "train.lr=1e6",
                                    "train.grad_clip=0"]}]}
    (root / "grid_huge.yaml").write_text(yaml.safe_dump(grid))
    env["grid_huge"] = str(root / "grid_huge.yaml")
    env["killed_late"] = _killed_late(root)
    for name in ("empty", "locked", "locked_anonymous", "locked_grid/control-s0", "stale"):
        (root / name).mkdir(parents=True)
        env[name.split("/")[0]] = str(root / name.split("/")[0])
    for name, source in (("locked_run", env["run_pm"]), ("locked_killed", env["killed"])):
        shutil.copytree(source, root / name)
        env[name] = str(root / name)
    hold(f"{env['stale']}=dies")
    hold(env["locked"], env["locked_run"], env["locked_killed"], str(root / "locked_grid" / "control-s0"),
         f"{env['locked_anonymous']}=anonymous")
    assert os.path.isfile(root / "stale" / ".ptrag.lock.json")
