"""registry.yaml: the built-in components, presets and training budgets.

Each built-in is written once, there: its kind, name, the plugin module that provides it, the
factory and parameter model in that module, and its one-line summary. The plugin modules turn
those entries into specs with :func:`builtin_specs`, and the docs' tables are generated from it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .hookspecs import KINDS, SPEC_TYPES, ComponentParams, ComponentSpec
from .markup import load_yaml

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "registry.yaml"


@dataclass(frozen=True)
class RegistryEntry:
    kind: str
    name: str
    plugin: str  # import path of the module holding the hook implementations
    summary: str
    extra: str = ""  # pip extra an optional built-in needs (its plugin is absent without it)
    factory: str = ""  # attribute of the plugin module: factory(params, BuildContext) -> component
    params: str = ""  # attribute of the plugin module: the pydantic parameter model (default: none)


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Budget:
    """A named training budget: train (and data) keys a preset or ``--budget`` applies."""

    name: str
    summary: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Registry:
    components: tuple[RegistryEntry, ...]
    presets: dict[str, Preset]
    default_preset: str
    budgets: dict[str, Budget] = field(default_factory=dict)
    refused_presets: dict[str, str] = field(default_factory=dict)  # plugin preset name -> why it was refused

    @property
    def plugin_modules(self) -> tuple[str, ...]:
        """Distinct plugin modules, in registry order."""
        return tuple(dict.fromkeys(entry.plugin for entry in self.components))

    @property
    def extras(self) -> dict[str, str]:
        """Plugin module -> the pip extra it needs, for optional built-ins."""
        return {entry.plugin: entry.extra for entry in self.components if entry.extra}

    def preset(self, name: str) -> Preset:
        if name in self.refused_presets:
            raise ConfigError(self.refused_presets[name])
        try:
            return self.presets[name]
        except KeyError:
            raise ConfigError(
                f"unknown preset {name!r}; available presets: {', '.join(sorted(self.presets))}"
            ) from None

    def with_plugin_presets(self, manager: Any) -> Registry:
        """The built-in presets and those an installed plugin offers (``manager.presets()``); a
        plugin preset refused for a name clash raises its message where it is used."""
        extra = manager.presets() if hasattr(manager, "presets") else {}
        refused = dict(getattr(manager, "preset_conflicts", {}) or {})
        if not extra and not refused:
            return self
        return replace(self, presets={**extra, **self.presets}, refused_presets=refused)

    def budget(self, name: str) -> Budget:
        try:
            return self.budgets[name]
        except KeyError:
            raise ConfigError(
                f"unknown budget {name!r}; available budgets: {', '.join(sorted(self.budgets)) or 'none'}"
            ) from None


def parse_registry(data: dict[str, Any], source: str = "registry.yaml") -> Registry:
    entries = []
    for i, raw in enumerate(data.get("components") or []):
        missing = {"kind", "name", "plugin", "summary"} - set(raw)
        if missing:
            raise ConfigError(f"{source}: component #{i} lacks {', '.join(sorted(missing))}")
        if raw["kind"] not in KINDS:
            raise ConfigError(f"{source}: component {raw['name']!r} has unknown kind {raw['kind']!r}")
        entries.append(RegistryEntry(raw["kind"], raw["name"], raw["plugin"], raw["summary"], raw.get("extra", ""),
                                     raw.get("factory", ""), raw.get("params", "")))
    presets = {
        name: Preset(name, body.get("summary", ""), dict(body.get("config") or {}))
        for name, body in (data.get("presets") or {}).items()
    }
    default = data.get("default_preset", "")
    if default not in presets:
        raise ConfigError(f"{source}: default_preset {default!r} is not a defined preset")
    budgets = {
        name: Budget(name, body.get("summary", ""), dict(body.get("config") or {}))
        for name, body in (data.get("budgets") or {}).items()
    }
    unknown = sorted({p.config.get("budget") for p in presets.values() if p.config.get("budget")} - set(budgets))
    if unknown:
        raise ConfigError(f"{source}: preset(s) name undefined budget(s) {', '.join(unknown)}")
    return Registry(tuple(entries), presets, default, budgets)


@cache
def load_registry(path: str | Path = REGISTRY_PATH) -> Registry:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: registry file not found; reinstall ptrag")
    return parse_registry(load_yaml(path.read_text(), str(path)) or {}, source=str(path))


def builtin_entries(kind: str, module: str) -> list[RegistryEntry]:
    """registry.yaml's entries of ``kind`` provided by the plugin module ``module``."""
    return [e for e in load_registry().components if e.kind == kind and e.plugin == module]


def builtin_specs(kind: str, module: str) -> list[ComponentSpec]:
    """The specs of ``module``'s built-in components of ``kind``, named and summarised by
    registry.yaml, with the factory and parameter model its entries name in that module."""
    source = sys.modules[module]
    specs = []
    for entry in builtin_entries(kind, module):
        factory = getattr(source, entry.factory)
        params = getattr(source, entry.params) if entry.params else ComponentParams
        specs.append(SPEC_TYPES[kind](entry.name, factory, params, entry.summary))
    return specs
