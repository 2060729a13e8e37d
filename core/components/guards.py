"""A component's output is checked where it enters the engine.

A plugin that breaks the contract (a retriever returning ids outside the database, another
number of columns than k, an excluded id or unsorted scores; a selector weighting padding or
returning NaN; a generator returning the wrong shape or non-finite cells; a metric returning
something that is not one number) stops the run with one line that names the component, its
plugin and the rule, instead of a crash deep inside another component or a silently wrong
result. A component's own exception is reported the same way (:func:`calling`). The checks are
whole-tensor operations, once per search or forward; the values of a training step's output are
left to evaluation, where looking at them costs no extra GPU sync. The contract suites in
``ptrag.core.testing`` run the same checks.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import PluginError, PtragError
from ..interfaces import CellEncoding, Generator, Metric, RetrievalResult, Retriever, Selector, SelectorOutput
from .fence import fenced

KIND_TYPES = {"retriever": Retriever, "selector": Selector, "generator": Generator, "metric": Metric}
SCORE_TOL = 1e-4  # rows must be sorted by score up to float rounding
#: an exception that says the machine ran out of memory is not the plugin's fault: it passes unchanged
_NOT_THE_PLUGIN = (PtragError, MemoryError, torch.cuda.OutOfMemoryError)  # torch>=2.1: the CUDA one


class ContractError(PluginError):
    """A component broke its contract (docs/writing-a-plugin.md)."""


def who(component: Any) -> str:
    """How messages name a built component: kind, name and plugin (set when it was built)."""
    return getattr(component, "_ptrag_label", None) or f"{getattr(component, 'name', '') or type(component).__name__}"


def _fail(label: str, what: str) -> ContractError:
    whose = "ptrag: please report it" if "(plugin ptrag:" in label else "the plugin: tell its authors"
    return ContractError(f"{label} broke its contract: {what} (a bug in {whose})")


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_only_hint(exc: BaseException) -> str:
    """numpy's words for a write into a read-only input, and what the plugin must do instead."""
    if isinstance(exc, ValueError) and "read-only" in str(exc):
        return "; a metric's pred, real and ctrl are read-only: copy an array before changing it (arr.copy())"
    return ""


@contextlib.contextmanager
def calling(component: Any, what: str) -> Iterator[None]:
    """A component's own exception as one line naming it, the call and the exception's first line
    (like a factory that fails); ptrag's errors, the user's Ctrl-C and out-of-memory errors pass
    unchanged. The call is fenced (:mod:`.fence`): its prints go to stderr, its sys.exit or
    KeyboardInterrupt is its failure. The exception stays the cause (``__cause__``) for a Python
    caller who wants the traceback."""
    with fenced(who(component), what):
        try:
            yield
        except _NOT_THE_PLUGIN:
            raise
        except Exception as exc:
            raise ContractError(f"{who(component)}: {what} failed ({_first_line(exc)}{_read_only_hint(exc)})") \
                from exc


def check_kind(kind: str, component: Any, label: str) -> None:
    expected = KIND_TYPES[kind]
    if not isinstance(component, expected):
        raise _fail(label, f"its factory returned {type(component).__name__}, not a {expected.__name__}")


def _shape(t: Any) -> tuple[int, ...] | None:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


def _first(mask: np.ndarray) -> tuple[int, int]:
    row, col = np.argwhere(mask)[0]
    return int(row), int(col)


# --------------------------------------------------------------------------- retrievers


def _retrieval_form(result: Any, n_queries: int, k: int, label: str) -> None:
    """A RetrievalResult of torch tensors: integer ids, float scores, [Q,k] each."""
    if not isinstance(result, RetrievalResult):
        raise _fail(label, f"search returned {type(result).__name__}, not a RetrievalResult(scores, ids)")
    scores, ids = result.scores, result.ids
    if not isinstance(scores, torch.Tensor) or not isinstance(ids, torch.Tensor):
        raise _fail(label, f"search returned scores as {type(scores).__name__} and ids as {type(ids).__name__}; "
                           "both must be torch tensors")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise _fail(label, f"search returned ids of dtype {ids.dtype}; ids must be integers (int64)")
    if not scores.dtype.is_floating_point:
        raise _fail(label, f"search returned scores of dtype {scores.dtype}; scores must be floats (float32)")
    for what, t in (("ids", ids), ("scores", scores)):
        got = list(t.shape)
        if got == [n_queries, k]:
            continue
        if len(got) == 2 and got[0] == n_queries:
            raise _fail(label, f"search returned {got[1]} columns for k={k} ({what} {got}); a row has exactly k "
                               "columns, padded with id -1 and score -inf when fewer entries are left")
        raise _fail(label, f"search returned {what} of shape {got} for {n_queries} queries and k={k}; expected "
                           f"[{n_queries}, {k}]")


def _retrieval_values(scores: np.ndarray, ids: np.ndarray, n_keys: int, label: str,
                      name: Callable[[int], str]) -> np.ndarray:
    """Ids in [-1, N), padding last with score -inf, finite sorted scores, no id twice; the mask."""
    bad = (ids < -1) | (ids >= n_keys)
    if bad.any():
        row, col = _first(bad)
        raise _fail(label, f"search returned id {int(ids[row, col])} for {n_keys} database entries (query "
                           f"{name(row)}); ids must be in [-1, {n_keys}), -1 being padding")
    valid = ids >= 0
    if (np.diff(valid.astype(np.int8), axis=1) > 0).any():
        raise _fail(label, "search returned padding (id -1) before a candidate; padding must come last")
    if not np.isfinite(scores[valid]).all():
        row, col = _first(valid & ~np.isfinite(scores))
        raise _fail(label, f"search returned score {scores[row, col]} for candidate {int(ids[row, col])} (query "
                           f"{name(row)}); a candidate's score must be finite")
    if not np.isneginf(scores[~valid]).all():
        row, col = _first(~valid & ~np.isneginf(scores))
        raise _fail(label, f"search returned score {scores[row, col]} for padding (query {name(row)}); padding (id -1) "
                           "must score -inf")
    both = valid[:, 1:] & valid[:, :-1]
    rising = both & (np.diff(np.where(valid, scores, 0.0), axis=1) > SCORE_TOL)
    if rising.any():
        row, col = _first(rising)
        raise _fail(label, f"search returned the candidates of query {name(row)} out of order (score "
                           f"{scores[row, col]:.4g} before {scores[row, col + 1]:.4g}); rows must be sorted by "
                           "score, highest first")
    ordered = np.sort(np.where(valid, ids, -1 - np.arange(ids.shape[1])), axis=1)  # padding never equal
    twice = ordered[:, 1:] == ordered[:, :-1]
    if twice.any():
        row, col = _first(twice)
        raise _fail(label, f"search returned id {int(ordered[row, col])} twice for query {name(row)}; each candidate "
                           "at most once")
    return valid


def check_retrieval(result: Any, n_queries: int, k: int, n_keys: int,
                    exclude: Sequence[Sequence[int]] | None, label: str,
                    name: Callable[[int], str] = str, explain: Callable[[int, int], str] | None = None) -> None:
    """What ``search`` promises (docs/writing-a-plugin.md), checked on the whole [Q,k] result at once.

    ``name(row)`` names a query in a message; ``explain(row, id)`` says in words why an excluded
    id must not come back (the engine knows which entry is the query's own, which its gene's)."""
    _retrieval_form(result, n_queries, k, label)
    ids = result.ids.detach().cpu().numpy().astype(np.int64, copy=False)
    scores = result.scores.detach().cpu().float().numpy()
    valid = _retrieval_values(scores, ids, n_keys, label, name)
    lengths = [len(e) for e in exclude or []]
    if not sum(lengths):
        return
    rows = np.repeat(np.arange(len(lengths)), lengths)  # one (row, id) pair per exclusion: a query
    cols = np.fromiter(itertools.chain.from_iterable(exclude), np.int64, sum(lengths))  # excludes few ids
    hit = (ids[rows] == cols[:, None]) & valid[rows] & (cols[:, None] >= 0)  # [exclusions, k]
    if hit.any():
        pair, col = _first(hit)
        row = int(rows[pair])
        why = explain(row, int(ids[row, col])) if explain else f"query {name(row)} got id {int(ids[row, col])}"
        raise _fail(label, f"search returned an excluded entry: {why}; an id in exclude[q] must never come back")


# --------------------------------------------------------------------------- selectors


def _finite(t: torch.Tensor | None) -> bool:
    """No NaN or inf in ``t``. A finite sum says so in one pass (on a CPU ten times faster than
    ``isfinite(t).all()``); only when the sum is not finite, min and max tell a NaN or inf (which
    propagate into them) from a sum that merely overflowed."""
    if t is None or t.numel() == 0 or not t.dtype.is_floating_point:
        return True
    t = t.detach()
    if bool(torch.isfinite(t.sum())):
        return True
    low, high = torch.aminmax(t)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def check_selection(output: Any, b: int, s: int, k: int, h: int, mask: torch.Tensor, label: str,
                    values: bool = True, finite: bool | None = None) -> None:
    """Context [B,S,H] and weights [B,S,K] (or None), scalar aux losses; with ``values`` also zero
    weight on padding, with ``finite`` (default: ``values``) finite numbers everywhere. Both look
    at the values, so the engine skips them in training steps, where they would cost a GPU sync."""
    if not isinstance(output, SelectorOutput):
        raise _fail(label, f"forward returned {type(output).__name__}, not a SelectorOutput")
    if output.context is not None and _shape(output.context) != (b, s, h):
        raise _fail(label, f"context has shape {_shape(output.context)}; expected [B,S,H] = {(b, s, h)}")
    if output.weights is not None and _shape(output.weights) != (b, s, k):
        raise _fail(label, f"weights have shape {_shape(output.weights)}; expected [B,S,K] = {(b, s, k)}")
    evidence = output.evidence
    if evidence is not None:
        for what, t in (("response", evidence.response), ("deviation", evidence.deviation)):
            if t is not None and _shape(t) != (b, k):
                raise _fail(label, f"evidence.{what} has shape {_shape(t)}; expected [B,K] = {(b, k)}")
    for name, value in output.aux_losses.items():
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise _fail(label, f"auxiliary loss {name!r} is {_shape(value) or type(value).__name__}, not a scalar "
                               "tensor")
    if values if finite is None else finite:
        _finite_selection(output, label)
    weights = output.weights
    if values and weights is not None and bool(weights.detach().masked_fill(mask[:, None, :], 0).abs().gt(0).any()):
        raise _fail(label, "a padding candidate (id -1) got a non-zero weight; give padding weight 0 (inputs.mask)")


def _finite_selection(output: SelectorOutput, label: str) -> None:
    named = {"context": output.context, "weights": output.weights,
             **{f"auxiliary loss {n!r}": v for n, v in output.aux_losses.items()}}
    if output.evidence is not None:
        named |= {"evidence.response": output.evidence.response, "evidence.deviation": output.evidence.deviation}
    for what, t in named.items():
        if not _finite(t):
            raise _fail(label, f"forward returned {what} with NaN or inf values; they must be finite")


# --------------------------------------------------------------------------- generators


def check_encoding(encoding: Any, b: int, s: int, h: int, label: str) -> None:
    """What ``encode`` hands the selector: cell states [B,S,H] and a query [B,H]."""
    if not isinstance(encoding, CellEncoding):
        raise _fail(label, f"encode returned {type(encoding).__name__}, not a CellEncoding(states, query); a "
                           "generator that declares uses_retrieval must return one for the selector")
    if _shape(encoding.states) != (b, s, h) or _shape(encoding.query) != (b, h):
        raise _fail(label, f"encode returned states {_shape(encoding.states)} and query {_shape(encoding.query)}; "
                           f"expected [B,S,H] = {(b, s, h)} and [B,H] = {(b, h)}")


def check_generation(pred: Any, expected: tuple[int, int, int], label: str, finite: bool = False,
                     groups: Sequence[str] = ()) -> None:
    """Predicted cells [B,S,G]; with ``finite`` also every value finite (evaluation and prediction).
    ``groups`` names the B cell sets, for the message."""
    if not isinstance(pred, torch.Tensor):
        raise _fail(label, f"forward returned {type(pred).__name__}; expected a tensor of cells [B,S,G] = "
                           f"{tuple(expected)}")
    if _shape(pred) != tuple(expected):
        raise _fail(label, f"forward returned cells of shape {_shape(pred)}; expected [B,S,G] = {tuple(expected)}")
    if finite and not _finite(pred):
        first = int((~torch.isfinite(pred.detach()).flatten(1).all(1)).nonzero()[0, 0])  # only on failure
        group = f" for {groups[first]}" if first < len(groups) else ""
        raise _fail(label, f"forward predicted NaN or inf cells{group}; cells must be finite")


def check_combined(cells: Any, n_genes: int, label: str, group: str) -> np.ndarray:
    """An ensemble's ``combine`` output for one group: cells [n, G] (n >= 1), every value finite."""
    try:
        array = np.asarray(cells, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(label, f"combine returned {type(cells).__name__} for {group}; expected cells [n, {n_genes}]") \
            from None
    if array.ndim != 2 or array.shape[1] != n_genes or len(array) == 0:
        raise _fail(label, f"combine returned cells of shape {tuple(array.shape)} for {group}; expected [n, {n_genes}]")
    if not np.isfinite(array).all():
        raise _fail(label, f"combine predicted NaN or inf cells for {group}; cells must be finite")
    return array


# --------------------------------------------------------------------------- metrics


def check_metric_value(value: Any, label: str, where: str = "") -> float:
    """A metric's value as a float: one finite number, or NaN where it is undefined for a group."""
    on = f" on {where}" if where else ""
    if isinstance(value, (str, bytes)):
        raise _fail(label, f"compute{on} returned the text {value!r}; a metric returns one number")
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise _fail(label, f"compute{on} returned {type(value).__name__}, not a number") from None
    except OverflowError:  # an int beyond a float's range
        raise _fail(label, f"compute{on} returned a number too large for a float; a value must be finite") from None
    if array.size != 1:
        raise _fail(label, f"compute{on} returned {array.size} values (shape {array.shape}); a metric "
                           "returns one number per group")
    out = float(array.reshape(()))
    if np.isinf(out):
        raise _fail(label, f"compute{on} returned {out}; a value must be finite, or NaN where the metric is "
                           "undefined for a group")
    return out


def check_set_values(values: Any, n: int, label: str, where: str = "") -> np.ndarray:
    """A set metric's values: one finite number (or NaN: undefined) per group."""
    on = f" on {where}" if where else ""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        out = np.asarray(values, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise _fail(label, f"compute_set{on} returned {type(values).__name__}, not finite numbers") from None
    if out.ndim > 1 or out.size != n:
        raise _fail(label, f"compute_set{on} returned {out.size} values (shape {out.shape}) for {n} groups; "
                           "give one per group, in the order of line.groups")
    out = out.reshape(-1)
    if np.isinf(out).any():
        raise _fail(label, f"compute_set{on} returned inf; a value must be finite, or NaN where the metric is "
                           "undefined for a group")
    return out
