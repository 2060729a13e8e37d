"""Cell sets: S perturbed cells of one (perturbation, context) paired with S matched controls."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..interfaces import CellSetBatch
from .dataset import PerturbationData
from .split import Group


@dataclass
class Vocab:
    """Index maps shared by training and prediction (perturbations, contexts, batches)."""

    perts: list[str]
    contexts: list[str]
    pert_embedding: dict[str, np.ndarray]  # gene -> [E]
    batches: list[str] = field(default_factory=list)  # empty: no batch_index in batches

    def __post_init__(self) -> None:
        self.pert_index = {p: i for i, p in enumerate(self.perts)}
        self.context_index = {c: i for i, c in enumerate(self.contexts)}
        self.batch_index = {b: i for i, b in enumerate(self.batches)}


class CellSetSampler:
    """Draws training batches of cell sets.

    A group smaller than S is sampled with replacement. Controls come from the same context and,
    where the context has controls in the perturbed cells' batch, from that batch.
    """

    def __init__(self, data: PerturbationData, groups: list[Group], vocab: Vocab, *,
                 cell_set_len: int, query_entry: dict[Group, int] | None = None):
        if not groups:
            raise ValueError("CellSetSampler needs at least one group")
        self.data, self.groups, self.vocab = data, list(groups), vocab
        self.cell_set_len = cell_set_len
        self.query_entry = query_entry or {}
        self._ctrl_by_batch: dict[tuple[str, str], np.ndarray] = {}
        batches = data.obs["batch"].astype(str).to_numpy() if "batch" in data.obs else None
        for context in data.contexts:
            ctrl = data.control_indices(context)
            if batches is not None:
                for b in np.unique(batches[ctrl]):
                    self._ctrl_by_batch[(context, str(b))] = ctrl[batches[ctrl] == b]
        self._batches = batches

    def matched_controls(self, context: str, cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One control per cell in ``cells``: same context, same batch where that batch has controls."""
        pool = self.data.control_indices(context)
        if len(pool) == 0:
            raise ValueError(f"context {context!r} has no control cells")
        if self._batches is None:
            return rng.choice(pool, size=len(cells), replace=len(pool) < len(cells))
        out = np.empty(len(cells), dtype=np.int64)
        cell_batches = self._batches[cells]
        for b in np.unique(cell_batches):
            where = np.flatnonzero(cell_batches == b)
            same = self._ctrl_by_batch.get((context, b), pool)
            out[where] = rng.choice(same, size=len(where), replace=len(same) < len(where))
        return out

    def make_batch(self, groups: list[Group], rng: np.random.Generator, *, with_target: bool = True) -> CellSetBatch:
        s = self.cell_set_len
        ctrl, target = [], []
        for pert, context in groups:
            idx = self.data.group_indices(pert, context)
            cells = rng.choice(idx, size=s, replace=len(idx) < s)
            ctrl.append(self.matched_controls(context, cells, rng))
            target.append(cells)
        return CellSetBatch(
            ctrl=torch.from_numpy(self.rows(ctrl)),
            pert_emb=torch.from_numpy(np.stack([self.vocab.pert_embedding[p] for p, _ in groups])),
            pert_index=torch.tensor([self.vocab.pert_index[p] for p, _ in groups]),
            context_index=torch.tensor([self.vocab.context_index[c] for _, c in groups]),
            target=torch.from_numpy(self.rows(target)) if with_target else None,
            batch_index=self.batch_index_of(ctrl),
            query_entry=torch.tensor([self.query_entry.get(g, -1) for g in groups]),
            perts=[p for p, _ in groups],
            contexts=[c for _, c in groups],
        )

    def query_batch(self, group: Group) -> CellSetBatch:
        """One set of ``group``'s query (perturbation, line, its indices and own database entry)
        with no cells yet: prediction fills in control cells chunk by chunk."""
        pert, context = group
        return CellSetBatch(
            ctrl=torch.zeros(1, 0, self.data.n_features),
            pert_emb=torch.from_numpy(np.asarray(self.vocab.pert_embedding[pert])[None]),
            pert_index=torch.tensor([self.vocab.pert_index[pert]]),
            context_index=torch.tensor([self.vocab.context_index[context]]),
            query_entry=torch.tensor([self.query_entry.get(group, -1)]),
            perts=[pert], contexts=[context])

    def control_draw(self, context: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` control cells of a context for a group with no cells of its own (an unmeasured
        knock-down): drawn from every batch of the line, with replacement only when needed."""
        pool = self.data.control_indices(context)
        if len(pool) == 0:
            raise ValueError(f"context {context!r} has no control cells")
        return rng.choice(pool, size=n, replace=len(pool) < n)

    def rows(self, sets: list[np.ndarray]) -> np.ndarray:
        """[len(sets), S, G] expression of equal-sized cell sets, read in one call (one sorted pass
        over the file when the data is backed)."""
        return self.data.X[np.concatenate(sets)].reshape(len(sets), len(sets[0]), self.data.n_features)

    def batch_index_of(self, ctrl: list[np.ndarray]) -> torch.Tensor | None:
        """[len(ctrl), S] vocabulary index of each control cell's batch (-1 unseen); None without batches."""
        if self._batches is None or not self.vocab.batch_index:
            return None
        lookup = self.vocab.batch_index
        return torch.tensor([[lookup.get(b, -1) for b in self._batches[i]] for i in ctrl], dtype=torch.long)

    def eval_cells(self, pert: str, context: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """For evaluation: all real cells of a held-out group and one matched control per cell."""
        real = self.data.group_indices(pert, context)
        return real, self.matched_controls(context, real, rng)

    def control_pool(self, context: str, batch: str | None = None) -> np.ndarray:
        """All control cells of a context (of one batch when given and present)."""
        if batch is not None and (context, str(batch)) in self._ctrl_by_batch:
            return self._ctrl_by_batch[(context, str(batch))]
        return self.data.control_indices(context)

    def sample(self, batch_size: int, rng: np.random.Generator) -> CellSetBatch:
        """``batch_size`` groups drawn uniformly (with replacement) from the training groups."""
        picks = rng.integers(0, len(self.groups), size=batch_size)
        return self.make_batch([self.groups[i] for i in picks], rng)


def step_seed(seed: int, step: int, rank: int = 0, stream: int = 0) -> int:
    """A 63-bit seed for one (training step, rank, stream): draws depend on the step, not on what
    ran before it, so a resumed run (on any number of processes) continues exactly where it was."""
    return int(np.random.SeedSequence([seed, stream, step, rank]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class EpochSchedule:
    """Which training groups each step uses: every epoch a new permutation of all groups (seeded by
    the run's seed and the epoch), cut into global batches of ``batch_size x world_size`` groups;
    rank r takes its ``batch_size`` slice of each (DistributedSampler's scheme). The last batch of
    an epoch wraps to the permutation's start. Stateless: ``groups(step)`` needs no history."""

    def __init__(self, n_groups: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if n_groups < 1:
            raise ValueError("EpochSchedule needs at least one group")
        self.n, self.batch, self.seed, self.rank, self.world = n_groups, batch_size, seed, rank, world_size
        self.steps_per_epoch = -(-n_groups // (batch_size * world_size))

    def groups(self, step: int) -> np.ndarray:
        """Indices of this rank's groups at ``step`` (0-based)."""
        epoch, i = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, 7, epoch]).permutation(self.n)
        start = (i * self.world + self.rank) * self.batch
        return order[np.arange(start, start + self.batch) % self.n]
