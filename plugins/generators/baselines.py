"""Baselines that share the generator interface so every metric and report treats them alike.

They learn what they need in ``fit`` (from the training database) and need no gradient steps.
Each predicts the matched control cells plus a mean shift, which keeps the real cell-to-cell
variability of the controls.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from ptrag.core.hookspecs import BuildContext, ComponentParams, GeneratorSpec, context_factory, hookimpl
from ptrag.core.interfaces import GenerationInput, Generator, GeneratorCapabilities
from ptrag.core.registry import builtin_specs

#: what every baseline declares: it learns in fit(), from observed responses only
BASELINE = GeneratorCapabilities(trainable=False, uses_retrieval=False, reads_gene_embeddings=False)


class ControlBaseline(Generator):
    """Predict no effect: the control cells themselves."""

    capabilities = BASELINE

    def forward(self, inputs: GenerationInput) -> torch.Tensor:
        return inputs.batch.ctrl.clone()


class PertMeanBaseline(Generator):
    """Control cells plus the mean training response of the same cell line."""

    capabilities = BASELINE  # its subclasses too: observed responses only

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.context_names = list(ctx.context_names)
        self.register_buffer("shift", torch.zeros(max(ctx.n_contexts, 1), ctx.n_genes))

    def fit(self, database) -> None:
        response = np.asarray(database.response)
        overall = response.mean(axis=0) if len(response) else np.zeros(self.shift.shape[1])
        shift = np.tile(overall, (len(self.context_names), 1)).astype(np.float32)
        for i, context in enumerate(self.context_names):
            rows = [j for j, c in enumerate(database.contexts) if c == context]
            if rows:  # a cell line unseen in training falls back to the all-lines mean
                shift[i] = response[rows].mean(axis=0)
        self.shift = torch.from_numpy(shift)

    def forward(self, inputs: GenerationInput) -> torch.Tensor:
        batch = inputs.batch
        return batch.ctrl + self.shift.to(batch.ctrl)[batch.context_index].unsqueeze(1)


def _context_rows(database, context: str) -> list[int]:
    return [j for j, c in enumerate(database.contexts) if c == context]


class ContextMeanBaseline(PertMeanBaseline):
    """Control cells plus the cell-weighted mean shift of all training perturbed cells of the line.

    shift_c = sum_i n_i * response_i / sum_i n_i over training entries i of cell line c, i.e. the
    mean of every perturbed training cell of c minus the control mean (STATE's "context mean").
    Unlike ``pert-mean`` (each perturbation weighs the same) large groups weigh more. A line with
    no training entry uses the all-lines cell-weighted mean.
    """

    def fit(self, database) -> None:
        response = np.asarray(database.response, dtype=np.float64)
        n = np.asarray(database.n_cells, dtype=np.float64)
        overall = (n @ response) / n.sum() if len(response) else np.zeros(self.shift.shape[1])
        shift = np.tile(overall, (len(self.context_names), 1))
        for i, context in enumerate(self.context_names):
            rows = _context_rows(database, context)
            if rows:
                shift[i] = (n[rows] @ response[rows]) / n[rows].sum()
        self.shift = torch.from_numpy(shift.astype(np.float32))


class LinearParams(ComponentParams):
    alpha: float = Field(1.0, gt=0, description="ridge penalty")


class LinearBaseline(Generator):
    """Ridge regression from the gene embedding to the pseudobulk response, one per cell line.

    For line c with training entries (x_i [E], y_i = response [G]): W_c = (Xc^T Xc + alpha I)^-1
    Xc^T Yc on centred Xc, Yc (closed form); predicted cells = control cells + mean_y_c +
    (x - mean_x_c) W_c. A line with fewer than two entries uses the model fitted on all lines.
    """

    capabilities = GeneratorCapabilities(trainable=False, uses_retrieval=False, reads_gene_embeddings=True)

    def __init__(self, params: LinearParams, ctx: BuildContext):
        super().__init__()
        self.alpha = params.alpha
        self.context_names = list(ctx.context_names)
        c, e, g = max(ctx.n_contexts, 1), max(ctx.embed_dim, 1), ctx.n_genes
        self.register_buffer("weight", torch.zeros(c, e, g))
        self.register_buffer("x_mean", torch.zeros(c, e))
        self.register_buffer("y_mean", torch.zeros(c, g))

    def _ridge(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xm, ym = x.mean(0), y.mean(0)
        xc, yc = x - xm, y - ym
        w = np.linalg.solve(xc.T @ xc + self.alpha * np.eye(x.shape[1]), xc.T @ yc)
        return w, xm, ym

    def fit(self, database) -> None:
        x = np.asarray(database.embeddings, dtype=np.float64)
        y = np.asarray(database.response, dtype=np.float64)
        if len(x) == 0:
            return
        pooled = self._ridge(x, y)
        weight, x_mean, y_mean = [], [], []
        for context in self.context_names:
            rows = _context_rows(database, context)
            w, xm, ym = self._ridge(x[rows], y[rows]) if len(rows) >= 2 else pooled
            weight.append(w), x_mean.append(xm), y_mean.append(ym)
        self.weight = torch.from_numpy(np.stack(weight).astype(np.float32))
        self.x_mean = torch.from_numpy(np.stack(x_mean).astype(np.float32))
        self.y_mean = torch.from_numpy(np.stack(y_mean).astype(np.float32))

    def forward(self, inputs: GenerationInput) -> torch.Tensor:
        batch = inputs.batch
        c = batch.context_index
        x = batch.pert_emb.to(self.weight) - self.x_mean[c]
        shift = self.y_mean[c] + torch.einsum("be,beg->bg", x, self.weight[c])
        return batch.ctrl + shift.to(batch.ctrl).unsqueeze(1)


class NeighbourMeanBaseline(PertMeanBaseline):
    """Control cells plus the unweighted mean observed response of the retrieved neighbours.

    The neighbours are the stage-1 retriever's top-K database entries for the query
    (``batch.neighbour_ids``, padding -1 ignored), so retrieval without any learning. With no
    valid neighbour (e.g. retriever ``none``) it falls back to ``pert-mean``.
    """

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx)
        self.register_buffer("response", torch.zeros(0, ctx.n_genes))

    def fit(self, database) -> None:
        super().fit(database)
        self.response = torch.from_numpy(np.asarray(database.response, dtype=np.float32))

    def forward(self, inputs: GenerationInput) -> torch.Tensor:
        batch = inputs.batch
        shift = self.shift.to(batch.ctrl)[batch.context_index]
        ids = batch.neighbour_ids
        if ids is not None and ids.numel() and len(self.response):
            valid = (ids >= 0).to(batch.ctrl.dtype)  # [B,K]
            gathered = self.response.to(batch.ctrl)[ids.clamp(min=0)]  # [B,K,G]
            n = valid.sum(1, keepdim=True)
            mean = (gathered * valid.unsqueeze(-1)).sum(1) / n.clamp(min=1)
            shift = torch.where(n > 0, mean, shift)
        return batch.ctrl + shift.unsqueeze(1)


class GeneOtherLinesBaseline(PertMeanBaseline):
    """Control cells plus the same gene's mean observed response in the *other* cell lines.

    shift(g, c) = mean of response(g, c') over training entries with gene g and line c' != c
    of c's modality (each line weighs the same; CRISPRa evidence never stands in for CRISPRi,
    data.modality_col). A gene with no entry in another line falls back to
    ``pert-mean`` of line c; when that is every held-out gene (a one-line screen, lines that share
    no gene) the run warns that it is ``pert-mean`` under another name. In a few-shot split this is
    the evidence a cross-context method must beat (docs/architecture.md, "What measurement taught us").
    """

    def fit(self, database) -> None:
        super().fit(database)
        response = np.asarray(database.response, dtype=np.float32)
        self._modality = dict(getattr(database, "modality", None) or {})  # only lines of the query's modality
        self._by_gene: dict[str, list[tuple[str, np.ndarray]]] = {}
        for i, (pert, context) in enumerate(zip(database.perts, database.contexts, strict=False)):
            self._by_gene.setdefault(pert, []).append((context, response[i]))

    def forward(self, inputs: GenerationInput) -> torch.Tensor:
        batch = inputs.batch
        shift = self.shift.to(batch.ctrl)[batch.context_index].clone()
        for b, (pert, line) in enumerate(zip(batch.perts, batch.contexts, strict=True)):
            modality = getattr(self, "_modality", {})
            other = [r for c, r in getattr(self, "_by_gene", {}).get(pert, [])
                     if c != line and modality.get(c) == modality.get(line)]
            if other:
                shift[b] = torch.from_numpy(np.mean(other, axis=0)).to(shift)
        return batch.ctrl + shift.unsqueeze(1)


def make_control(params: ComponentParams, ctx: BuildContext) -> ControlBaseline:
    return ControlBaseline()


make_pert_mean = context_factory(PertMeanBaseline)
make_context_mean = context_factory(ContextMeanBaseline)
make_neighbour_mean = context_factory(NeighbourMeanBaseline)
make_gene_other_lines = context_factory(GeneOtherLinesBaseline)


@hookimpl
def ptrag_generators() -> list[GeneratorSpec]:
    return builtin_specs("generator", __name__)
