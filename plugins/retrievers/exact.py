"""`exact`: brute-force cosine top-k in torch (the paper's behaviour), batched over queries.

Exclusions are one vectorised scatter of -inf; ties are ordered by lower id first, so results
are deterministic (duplicate keys, e.g. one gene in several cell lines, all stay retrievable).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from ptrag.core.errors import ConfigError
from ptrag.core.hookspecs import BuildContext, ComponentParams, RetrieverSpec, hookimpl
from ptrag.core.interfaces import RetrievalResult, Retriever, RetrieverCapabilities
from ptrag.core.registry import builtin_specs
from ptrag.core.retrieval import brute_force_query, check_keys, flat_exclusions, normalise_rows


class ExactParams(ComponentParams):
    k: int = Field(32, ge=0, description="candidates per query")
    device: str = Field("cpu", description="cpu, cuda, cuda:N, mps, or 'model' = the model's device")
    batch_size: int = Field(1024, ge=1, description="queries scored per matrix product")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value != "model":
            try:
                torch.device(value)
            except (RuntimeError, ValueError):
                raise ValueError(f"unknown device {value!r}; use cpu, cuda, cuda:N, mps or model") from None
        return value


def _resolve(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"retriever exact: device {device!r} requested but torch sees no CUDA device; use cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"retriever exact: device {device!r} is not available; use cpu")
    return dev


def topk_lower_id_first(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of each row ordered by (value desc, index asc), even when ties cross the cut."""
    vals, idx = torch.topk(sims, k, dim=1, largest=True, sorted=True)
    # order within the selection: stable sort by index, then stable sort by value
    idx, perm = torch.sort(idx, dim=1, stable=True)
    vals = torch.gather(vals, 1, perm)
    vals, perm = torch.sort(vals, dim=1, descending=True, stable=True)
    idx = torch.gather(idx, 1, perm)
    # rows where the k-th value ties values outside the selection: full stable sort of those rows
    kth = vals[:, -1:]
    tie_rows = ((sims >= kth).sum(dim=1) > k) & torch.isfinite(kth[:, 0])
    if bool(tie_rows.any()):
        rows = tie_rows.nonzero().squeeze(1)
        v, i = torch.sort(sims[rows], dim=1, descending=True, stable=True)
        vals[rows], idx[rows] = v[:, :k], i[:, :k]
    return vals, idx


class ExactRetriever(Retriever):
    def __init__(self, device: str = "cpu", batch_size: int = 1024) -> None:
        self.device_name = device
        self.device = _resolve(device)
        self.batch_size = batch_size
        self.keys = torch.zeros((0, 0), dtype=torch.float32)

    def build(self, keys: np.ndarray | torch.Tensor, meta: Any | None = None) -> None:
        arr = normalise_rows(check_keys(keys, self.name or "exact"))
        self.keys = torch.from_numpy(arr).to(self.device)

    def search(self, queries: np.ndarray | torch.Tensor, k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> RetrievalResult:
        job = brute_force_query("exact", self.keys, queries, k, exclude)
        q, excl, out, kk = job.queries, job.exclude, job.out, job.kk
        if kk == 0:
            return out
        for start in range(0, len(q), self.batch_size):
            stop = min(start + self.batch_size, len(q))
            qt = torch.from_numpy(q[start:stop]).to(self.device)
            sims = qt @ self.keys.T
            rows, cols = flat_exclusions(excl[start:stop])
            if len(rows):
                sims[torch.from_numpy(rows).to(self.device), torch.from_numpy(cols).to(self.device)] = float("-inf")
            vals, idx = topk_lower_id_first(sims, kk)
            vals, idx = vals.cpu(), idx.cpu()
            idx = torch.where(torch.isfinite(vals), idx, torch.full_like(idx, -1))
            out.scores[start:stop, :kk] = vals
            out.ids[start:stop, :kk] = idx
        return out

    def save(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "keys.npy", self.keys.cpu().numpy())
        (path / "retriever.json").write_text(json.dumps(
            {"name": self.name, "n": len(self), "device": self.device_name, "batch_size": self.batch_size}))

    @classmethod
    def load(cls, directory: str | Path) -> ExactRetriever:
        path = Path(directory)
        info = json.loads((path / "retriever.json").read_text())
        device = info.get("device", "cpu")
        try:
            out = cls(device, info.get("batch_size", 1024))
        except ConfigError:  # trained on a GPU, predicting on a machine without one
            out = cls("cpu", info.get("batch_size", 1024))
        out.keys = torch.from_numpy(np.load(path / "keys.npy", allow_pickle=False)).to(out.device)
        return out

    def __len__(self) -> int:
        return int(self.keys.shape[0])


def make_exact(params: ExactParams, ctx: BuildContext) -> ExactRetriever:
    device = ctx.device if params.device == "model" else params.device
    retriever = ExactRetriever(device, params.batch_size)
    retriever.capabilities = RetrieverCapabilities(k=params.k, exact=True)
    return retriever


@hookimpl
def ptrag_retrievers() -> list[RetrieverSpec]:
    return builtin_specs("retriever", __name__)
