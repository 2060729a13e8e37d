"""Bad-input cases of untrusted files: gene-embedding pickles and checkpoints crafted to run code
when they are opened. Each crafted file would create a file under the prepared folder (``pwned_*``)
if any of its code ran; each case checks that the file is absent and that nothing was loaded.
ptrag reads pickles through an allow-list unpickler and checkpoints with torch's weights-only
loader (core/pickles.py, docs/security.md); a pickled DataFrame of numbers still loads
(cases_data.py: ``run-embeddings-dataframe-pickle``)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

from .case import TINY, Case


class RunsCode:
    """Pickled, it tells the unpickler to call ``function(*args)``: what a crafted file does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _touch(target: Path) -> RunsCode:
    return RunsCode(os.system, f"touch {target}")


LINEAR = ["run", "--preset", "linear", *TINY]
SAFE = "save the table as .npz, .csv, .parquet or a pickle of a plain dict gene symbol -> list of floats"
CHECKPOINT = "not loaded: it holds more than tensors, numbers and strings (it names posix.system), and loading " \
             "that could run code in it"

CASES = [
    Case("run-embeddings-pickle-runs-code", [*LINEAR, "--set", "data.gene_embeddings={evil_pkl}", "--out", "{new}"],
         f"evil.pkl: not loaded: the pickle asks for posix.system, and loading it would run that code; ptrag reads "
         f"pickles as data only; {SAFE}", absent="{tmp}/pwned_pkl",
         why="the pickle's code would have created a file; pickle.load ran it before"),
    Case("inspect-embeddings-pickle-runs-code", ["data", "inspect", "{tiny}", "--gene-embeddings", "{evil_pkl}"],
         "the pickle asks for posix.system", absent="{tmp}/pwned_pkl"),
    Case("run-embeddings-pickle-eval", [*LINEAR, "--set", "data.gene_embeddings={eval_pkl}", "--out", "{new}"],
         "eval.pkl: not loaded: the pickle asks for __builtin__.eval", absent="{tmp}/pwned_eval",
         why="protocol 0, the oldest opcodes (and Python 2's module names): the same allow-list"),
    Case("run-embeddings-pickle-hidden-in-a-vector", [*LINEAR, "--set", "data.gene_embeddings={nested_pkl}", "--out",
                                                      "{new}"],
         "nested.pkl: not loaded: the pickle asks for posix.system", absent="{tmp}/pwned_nested",
         why="a plain dict whose one vector is the payload"),
    Case("run-embeddings-pickle-of-tensors", [*LINEAR, "--set", "data.gene_embeddings={tensor_pkl}", "--out",
                                              "{new}"],
         "tensors.pkl: not loaded: the pickle asks for torch._utils._rebuild_tensor_v2",
         why="torch tensors pickled with pickle need torch's own loader: torch.save them to a .pt instead"),
    Case("run-embeddings-pt-runs-code", [*LINEAR, "--set", "data.gene_embeddings={evil_pt}", "--out", "{new}"],
         "evil.pt: not loaded: it names posix.system, and loading it could run code", absent="{tmp}/pwned_pt"),
    Case("predict-checkpoint-runs-code", ["predict", "--run", "{evil_run}", "--data", "{tiny}", "--out", "{new}"],
         CHECKPOINT, absent="{tmp}/pwned_ckpt", why="someone else's run folder: torch.load(weights_only=False) ran it"),
    Case("resume-checkpoint-runs-code", ["run", "--resume", "{evil_killed}"], CHECKPOINT,
         absent="{tmp}/pwned_resume"),
]


def _crafted_checkpoint(source: str, target: Path, payload: Path) -> str:
    """A copy of a ptrag run folder whose checkpoint also holds an object that runs code when unpickled."""
    import torch

    shutil.copytree(source, target)
    checkpoint = torch.load(target / "checkpoint.pt", weights_only=False)  # the test's own file
    checkpoint["note"] = _touch(payload)
    torch.save(checkpoint, target / "checkpoint.pt")
    return str(target)


def prepare(root: Path, env: dict[str, str]) -> None:
    import anndata as ad
    import torch

    from ptrag.core.data.embeddings import default_embeddings

    names = sorted(set(ad.read_h5ad(env["tiny"]).obs["gene"].astype(str)) - {"non-targeting"})
    matrix, _ = default_embeddings(names).lookup(names, "zero")  # the tiny screen's genes, as a user's table
    table = {name: [float(v) for v in row] for name, row in zip(names, matrix, strict=True)}
    first = names[0]
    (root / "evil.pkl").write_bytes(pickle.dumps({**table, first: _touch(root / "pwned_pkl")}))
    env["evil_pkl"] = str(root / "evil.pkl")
    code = f"open({str(root / 'pwned_eval')!r}, 'w').write('ran')"
    (root / "eval.pkl").write_bytes(pickle.dumps({first: RunsCode(eval, code)}, protocol=0))
    env["eval_pkl"] = str(root / "eval.pkl")
    (root / "nested.pkl").write_bytes(pickle.dumps({**table, first: [0.5, _touch(root / "pwned_nested")]}))
    env["nested_pkl"] = str(root / "nested.pkl")
    (root / "tensors.pkl").write_bytes(pickle.dumps({n: torch.tensor(v) for n, v in list(table.items())[:50]}))
    env["tensor_pkl"] = str(root / "tensors.pkl")
    torch.save({first: torch.ones(4), "payload": _touch(root / "pwned_pt")}, root / "evil.pt")
    env["evil_pt"] = str(root / "evil.pt")
    env["evil_run"] = _crafted_checkpoint(env["run_tr"], root / "evil_run", root / "pwned_ckpt")
    env["evil_killed"] = _crafted_checkpoint(env["killed"], root / "evil_killed", root / "pwned_resume")
