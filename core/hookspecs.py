"""The contract between ptrag and its plugins.

A plugin is any module (or object) with functions decorated by :data:`hookimpl` whose names
match the hooks below. Each hook returns a list of component specs: a name, a factory, a
pydantic model that validates the component's parameters, and a one-line summary. Built-in
components use exactly this contract, so third-party packages are first-class citizens. A plugin
may also offer presets (:class:`PresetSpec`): named experiment configurations, as registry.yaml's,
which ``--preset``, ``compare`` lists and an ensemble's members use by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pluggy
from pydantic import BaseModel, ConfigDict

PROJECT = "ptrag"
ENTRY_POINT_GROUP = "ptrag"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Kind = Literal["retriever", "selector", "generator", "metric"]
KINDS: tuple[str, ...] = ("retriever", "selector", "generator", "metric")


class ComponentParams(BaseModel):
    """Base for a component's parameter model: unknown keys are rejected, values validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class BuildContext:
    """What the engine knows when it builds a component; factories take what they need."""

    n_genes: int = 0
    embed_dim: int = 0
    hidden_dim: int = 128
    n_contexts: int = 1
    n_perts: int = 0
    n_batches: int = 0
    gene_names: tuple[str, ...] = ()
    context_names: tuple[str, ...] = ()
    seed: int = 0
    device: str = "cpu"
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentSpec:
    """A named component offered by a plugin.

    ``factory(params, context)`` returns the component; ``params`` is an instance of
    ``params_model`` validated from the user's configuration.
    """

    kind: ClassVar[str] = ""
    name: str
    factory: Callable[[Any, BuildContext], Any]
    params_model: type[BaseModel] = ComponentParams
    summary: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"{type(self).__name__} needs a non-empty string name")
        if not callable(self.factory):
            raise TypeError(f"{self.kind} {self.name!r}: factory must be callable")
        if not (isinstance(self.params_model, type) and issubclass(self.params_model, BaseModel)):
            raise TypeError(f"{self.kind} {self.name!r}: params_model must be a pydantic model class")

    def build(self, params: BaseModel, context: BuildContext) -> Any:
        """The component, named as registered (its ``name``)."""
        component = self.factory(params, context)
        try:
            component.name = self.name
        except AttributeError:  # an object that takes no attributes keeps its own name
            pass
        return component


def params_factory(cls: Callable[..., Any], *names: str) -> Callable[[Any, BuildContext], Any]:
    """A factory that builds ``cls`` from the named parameters, in order (no build context needed)."""
    return lambda params, context: cls(*(getattr(params, name) for name in names))


def context_factory(cls: Callable[..., Any]) -> Callable[[Any, BuildContext], Any]:
    """A factory that builds ``cls`` from the build context alone (no parameters)."""
    return lambda params, context: cls(context)


@dataclass(frozen=True)
class RetrieverSpec(ComponentSpec):
    kind: ClassVar[str] = "retriever"


@dataclass(frozen=True)
class SelectorSpec(ComponentSpec):
    kind: ClassVar[str] = "selector"


@dataclass(frozen=True)
class GeneratorSpec(ComponentSpec):
    kind: ClassVar[str] = "generator"


@dataclass(frozen=True)
class MetricSpec(ComponentSpec):
    kind: ClassVar[str] = "metric"


SPEC_TYPES: dict[str, type[ComponentSpec]] = {
    "retriever": RetrieverSpec,
    "selector": SelectorSpec,
    "generator": GeneratorSpec,
    "metric": MetricSpec,
}


#: a preset's name: a comparison or an ensemble member runs in <run>/compare/<preset>
PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class PresetSpec:
    """A named experiment configuration a plugin offers, written as registry.yaml's presets are
    (component sections, ``budget``, ``model``, ``train``, ``compare``, ...): so a plugin's
    generator can run by ``--preset`` and be a comparison or an ensemble's member by name."""

    name: str
    config: dict[str, Any]
    summary: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a preset needs a non-empty string name, got {self.name!r}")
        if not PRESET_NAME.fullmatch(self.name):  # it names a folder: <run>/compare/<preset>
            raise TypeError(f"preset {self.name!r}: a preset's name is a folder name, letters, digits and - _ . + "
                            "only, starting with a letter or digit")
        if not isinstance(self.config, dict):
            raise TypeError(f"preset {self.name!r}: config must be a dict, got {type(self.config).__name__}")


class PtragHookSpecs:
    """Hook specifications. Every hook takes no arguments and returns a list of specs."""

    @hookspec
    def ptrag_retrievers(self) -> list[RetrieverSpec]:
        """Stage-1 retrievers (non-differentiable nearest-neighbour search)."""

    @hookspec
    def ptrag_selectors(self) -> list[SelectorSpec]:
        """Stage-2 selectors (differentiable keep/weight over retrieved candidates)."""

    @hookspec
    def ptrag_generators(self) -> list[GeneratorSpec]:
        """Generators: control cell set + perturbation (+ context) -> predicted cell set."""

    @hookspec
    def ptrag_metrics(self) -> list[MetricSpec]:
        """Evaluation metrics on one (perturbation, cell line) group."""

    @hookspec
    def ptrag_presets(self) -> list[PresetSpec]:
        """Named experiment configurations (presets), usable wherever a built-in preset is."""


HOOK_FOR_KIND: dict[str, str] = {
    "retriever": "ptrag_retrievers",
    "selector": "ptrag_selectors",
    "generator": "ptrag_generators",
    "metric": "ptrag_metrics",
}
