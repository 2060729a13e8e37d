"""Screens from Python: the built-in data, validating and summarising a file, writing a split.

``ptrag data synth|inspect|split`` call these.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
from pydantic import ValidationError

from ..config import DataConfig, check_seed
from ..data.builtin import builtin_screen
from ..data.dataset import PerturbationData
from ..data.embeddings import GeneEmbeddings, load_gene_embeddings
from ..data.loading import read_screen
from ..data.prepare import TARGET_SUM, Prepared, prepare_counts, read_raw
from ..data.split import Split, resolve_split, split_to_toml
from ..errors import ConfigError
from ..runs.requests import warn_zero_shot
from .boundary import one_error


def data_config(path: str | os.PathLike | None, **fields: Any) -> DataConfig:
    """Data options as a DataConfig; a bad value fails in one line naming its option."""
    try:
        return DataConfig(path=str(path) if path else None, **{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a rule between options (e.g. a label both a control and a perturbation)
            raise ConfigError(first["msg"]) from None
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise ConfigError(f"{option}: {first['msg']} (got {first.get('input')!r})") from None


@one_error
def synth(preset: str = "demo", seed: int = 0, family: str = "v3") -> ad.AnnData:
    """A built-in Replogle-like screen of simulator ``family`` (v3 or grn; real schema; ground truth
    in ``uns['ptrag_synth']``); ``seed`` is the data seed, 0 to 2**32 - 1 (as ``data.seed``)."""
    return builtin_screen(preset, check_seed(seed, "--seed"), family)


@dataclass
class Inspection:
    """A validated screen and its gene-embedding coverage (what ``ptrag data inspect`` prints)."""

    data: PerturbationData
    config: DataConfig
    embeddings: GeneEmbeddings
    seconds: float  # reading and validating the file

    @property
    def covered(self) -> int:
        return sum(self.embeddings.has(p) for p in self.data.perturbations)

    @property
    def coverage_note(self) -> str | None:
        return self.embeddings.coverage_message(self.data.perturbations, "drop")

    @property
    def control_like(self) -> str | None:
        """Labels that look like controls but are not declared: `ptrag run` stops on these."""
        return self.data.info.get("control_like")


@one_error
def inspect(path: str | os.PathLike, *, gene_embeddings: str | None = None, **columns: Any) -> Inspection:
    """Read and validate an .h5ad screen (``columns``: DataConfig keys such as ``pert_col``). What a
    run refuses but a look at the file should show (control-like labels, raw counts) is reported."""
    cfg = data_config(path, **columns)
    started = time.perf_counter()
    data = read_screen(path, cfg, control_like="report")
    seconds = time.perf_counter() - started
    table = load_gene_embeddings(gene_embeddings, data.perturbations, duplicates=cfg.duplicate_embeddings)
    return Inspection(data, cfg, table, seconds)


@one_error
def prepare(path: str | os.PathLike, *, pert_col: str = "gene", counts_layer: str | None = None,
            target_sum: float = TARGET_SUM, n_top_genes: int | None = None) -> Prepared:
    """A raw-count screen log-normalised for ptrag (``ptrag data prepare``; data/prepare.py): X =
    log1p(counts per ``target_sum``), the counts kept in ``layers['counts']``, optionally the
    ``n_top_genes`` most variable genes plus the perturbed genes measured."""
    return prepare_counts(read_raw(path), source=str(path), pert_col=pert_col, layer=counts_layer,
                          target_sum=target_sum, n_top_genes=n_top_genes)


@dataclass
class WrittenSplit:
    split: Split
    toml: str  # the split in STATE's TOML format


@one_error
def split(path: str | os.PathLike, *, seed: int = 0, dataset: str | None = None,
          log: Callable[[str], None] = lambda message: None, **options: Any) -> WrittenSplit:
    """The random few-shot split ``ptrag run --data FILE --seed SEED`` would make, as STATE TOML
    (``options``: DataConfig keys such as ``holdout_context``, ``test_fraction``); ``seed`` as the run
    seed, 0 to 2**32 - 1."""
    seed = check_seed(seed, "--seed")
    cfg = data_config(path, **options)
    data = read_screen(path, cfg)
    result = resolve_split(cfg, data, seed)
    name = dataset or Path(path).stem.replace(".", "_")
    warn_zero_shot(result, log)
    return WrittenSplit(result, split_to_toml(result, name, str(Path(path).resolve().parent)))
