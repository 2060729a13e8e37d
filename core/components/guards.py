"""A component's output is checked where it enters the engine.

A plugin that breaks the contract (a retriever returning ids outside the database, fewer than k
columns or an excluded id; a selector weighting padding; a generator returning the wrong shape
or non-finite cells) stops the run with one line that names the component, its plugin and the
violation, instead of a crash deep inside another component or a silently wrong result. The
contract suites in ``ptrag.core.testing`` run the same checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import PluginError
from ..interfaces import Generator, Metric, RetrievalResult, Retriever, Selector, SelectorOutput

KIND_TYPES = {"retriever": Retriever, "selector": Selector, "generator": Generator, "metric": Metric}


class ContractError(PluginError):
    """A component broke its contract (docs/writing-a-plugin.md)."""


def who(component: Any) -> str:
    """How messages name a built component: kind, name and plugin (set when it was built)."""
    return getattr(component, "_ptrag_label", None) or f"{getattr(component, 'name', '') or type(component).__name__}"


def _fail(label: str, what: str) -> ContractError:
    return ContractError(f"{label} broke its contract: {what}")


def check_kind(kind: str, component: Any, label: str) -> None:
    expected = KIND_TYPES[kind]
    if not isinstance(component, expected):
        raise _fail(label, f"its factory returned {type(component).__name__}, not a {expected.__name__}")


def _shape(t: Any) -> tuple[int, ...] | None:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


def check_retrieval(result: Any, n_queries: int, k: int, n_keys: int,
                    exclude: Sequence[Sequence[int]] | None, label: str) -> None:
    """[Q,k] float scores and int64 ids in [-1, N), padding last, no excluded id, finite scores."""
    if not isinstance(result, RetrievalResult):
        raise _fail(label, f"search returned {type(result).__name__}, not a RetrievalResult")
    if _shape(result.ids) != (n_queries, k) or _shape(result.scores) != (n_queries, k):
        raise _fail(label, f"search returned ids {_shape(result.ids)} and scores {_shape(result.scores)} for "
                           f"{n_queries} queries and k={k}; expected ({n_queries}, {k}) each (pad with id -1)")
    ids = result.ids.detach().cpu().numpy()
    scores = result.scores.detach().cpu().float().numpy()
    if not np.issubdtype(ids.dtype, np.integer):
        raise _fail(label, f"search returned ids of dtype {ids.dtype}; expected int64")
    bad = (ids < -1) | (ids >= n_keys)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise _fail(label, f"search returned id {int(ids[row, col])} (query {row}) outside the database's "
                           f"{n_keys} entries")
    valid = ids >= 0
    if (np.diff(valid.astype(np.int8), axis=1) > 0).any():
        raise _fail(label, "search returned padding (id -1) before a candidate; padding must come last")
    if not np.isfinite(scores[valid]).all():
        raise _fail(label, "search returned a non-finite score for a real candidate")
    for row, skip in enumerate(exclude or []):
        hit = set(ids[row][valid[row]].tolist()) & {int(i) for i in skip if i >= 0}
        if hit:
            raise _fail(label, f"search returned excluded id(s) {sorted(hit)[:5]} for query {row} (the query's own "
                               "entry, or its gene's entries when the same gene is excluded)")


def check_selection(output: Any, b: int, s: int, k: int, h: int, mask: torch.Tensor, label: str,
                    values: bool = True) -> None:
    """Context [B,S,H] and weights [B,S,K] (or None), scalar aux losses; with ``values`` also zero
    weight on padding (a look at the values: skipped in training steps, where it would cost a sync)."""
    if not isinstance(output, SelectorOutput):
        raise _fail(label, f"forward returned {type(output).__name__}, not a SelectorOutput")
    if output.context is not None and _shape(output.context) != (b, s, h):
        raise _fail(label, f"context has shape {_shape(output.context)}; expected {(b, s, h)}")
    if output.weights is not None:
        if _shape(output.weights) != (b, s, k):
            raise _fail(label, f"weights have shape {_shape(output.weights)}; expected {(b, s, k)}")
        if values and bool((output.weights.detach()[~mask[:, None, :].expand(b, s, k)] != 0).any()):
            raise _fail(label, "a padding candidate (id -1) got a non-zero weight")
    if output.evidence is not None and _shape(output.evidence.response) != (b, k):
        raise _fail(label, f"evidence.response has shape {_shape(output.evidence.response)}; expected {(b, k)}")
    for name, value in output.aux_losses.items():
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise _fail(label, f"auxiliary loss {name!r} is not a scalar tensor")


def check_generation(pred: Any, expected: tuple[int, int, int], label: str, finite: bool = False) -> None:
    """Predicted cells [B,S,G]; with ``finite`` also every value finite (before writing them)."""
    if _shape(pred) != tuple(expected):
        raise _fail(label, f"forward returned {_shape(pred) or type(pred).__name__}; expected cells {tuple(expected)}")
    if finite and not bool(torch.isfinite(pred).all()):
        raise _fail(label, "predicted non-finite values (NaN or inf)")


def check_metric_value(value: Any, label: str) -> float:
    """A metric's value as a float (NaN allowed: undefined for that group)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _fail(label, f"compute returned {type(value).__name__}, not a number") from None


def check_set_values(values: Any, n: int, label: str) -> np.ndarray:
    """A set metric's values: one number per group."""
    try:
        out = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise _fail(label, f"compute_set returned {type(values).__name__}, not numbers") from None
    if len(out) != n:
        raise _fail(label, f"compute_set returned {len(out)} values for {n} groups")
    return out
