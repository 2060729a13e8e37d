"""Components built from a configuration, in one place for training, prediction and scoring.

Each component is made by its plugin's factory with its validated parameters, checked to be the
kind asked for, named as registered, and adapted if it follows ptrag 0.1's contract. A factory
that raises stops with one line naming the component and its plugin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ComponentChoice, ExperimentConfig, component_params
from ..errors import PluginError, PtragError
from ..hookspecs import BuildContext
from ..interfaces import Generator, Metric, Retriever, Selector
from .adapters import adapt
from .fence import fenced
from .guards import calling, check_kind, who
from .manager import PluginManager
from .readonly import Untouched


def describe(kind: str, name: str, manager: PluginManager) -> str:
    """``selector 'gumbel' (plugin ptrag:selectors.gumbel)``, or with ``package NAME VERSION`` for a
    third-party one: how messages name a component."""
    record = manager.provider(kind, name)
    package = "" if record.builtin else f", package {record.package} {record.version}".rstrip()
    return f"{kind} {name!r} (plugin {record.name}{package})"


def build(kind: str, choice: ComponentChoice, manager: PluginManager, ctx: BuildContext) -> Any:
    """One component of ``kind`` as ``choice`` names and parameterises it."""
    spec = manager.get(kind, choice.name)
    params = component_params(choice, kind, manager)
    label = describe(kind, choice.name, manager)
    try:
        with fenced(label, "its factory"):
            component = spec.build(params, ctx)
    except PtragError:
        raise
    except Exception as exc:
        first = " ".join(str(exc).split())[:300]
        raise PluginError(f"{label}: its factory failed ({type(exc).__name__}: {first})") from None
    check_kind(kind, component, label)
    component._ptrag_label = label
    return adapt(kind, component, params, label)


def build_metrics(choices: Sequence[ComponentChoice], manager: PluginManager, ctx: BuildContext) -> dict[str, Metric]:
    """The metrics a run (or a scoring call) reports, by name."""
    return {choice.name: build("metric", choice, manager, ctx) for choice in choices}


@dataclass
class Components:
    """A run's retriever, selector, generator and metrics, built and checked."""

    retriever: Retriever
    selector: Selector
    generator: Generator
    metrics: dict[str, Metric]

    @property
    def k(self) -> int:
        """Candidates per query stage 1 retrieves (0: no retrieval)."""
        caps = self.retriever.capabilities
        return caps.k if caps.retrieves else 0

    def fit(self, database: Any, *, index: bool = True) -> None:
        """The retriever indexes the database's keys (``index``; not for a loaded one) and the
        generator sees the database; a plugin's exception is one line naming it."""
        if index:
            untouched = Untouched([("keys", database.embeddings)])  # the candidates' features too
            with calling(self.retriever, "build"):
                self.retriever.build(database.embeddings, database.meta)
            untouched.check(self.retriever, "build")
        untouched = Untouched([("database", database)])
        with calling(self.generator, "fit"):
            self.generator.fit(database)
        untouched.check(self.generator, "fit")

    def load_retriever(self, directory: Path) -> None:
        """The run's saved index in place of the freshly built retriever (same name, capabilities, label)."""
        built = self.retriever
        with calling(built, "load"):
            loaded = type(built).load(directory)
        check_kind("retriever", loaded, who(built))
        loaded.name, loaded.capabilities = built.name, built.capabilities
        loaded._ptrag_label = who(built)
        self.retriever = loaded

    def embedding_readers(self) -> list[str]:
        """Names of the components whose results depend on gene embeddings."""
        return embedding_readers(self.retriever, self.generator)


def embedding_readers(*components: Retriever | Generator) -> list[str]:
    """Names of the components (retrievers, generators) that read gene embeddings: those that
    declare it, and any that declare nothing (the safe side)."""
    def reads(c: Any) -> bool:
        caps = getattr(c, "capabilities", None)
        return caps.reads_gene_embeddings if caps is not None else bool(getattr(c, "uses_gene_embeddings", True))

    return [getattr(c, "name", "") or type(c).__name__ for c in components if c is not None and reads(c)]


def build_components(config: ExperimentConfig, manager: PluginManager, ctx: BuildContext,
                     metrics: bool = True) -> Components:
    """Every component of ``config`` (``metrics=False``: none, e.g. to predict without scoring)."""
    return Components(
        retriever=build("retriever", config.retriever, manager, ctx),
        selector=build("selector", config.selector, manager, ctx),
        generator=build("generator", config.generator, manager, ctx),
        metrics=build_metrics(config.metrics, manager, ctx) if metrics else {},
    )
