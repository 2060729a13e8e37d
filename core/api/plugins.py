"""What is installed: ``ptrag.components`` (``ptrag plugins``) and the registry's built-ins and presets."""

from __future__ import annotations

from typing import Any

from ..components.manager import PluginManager, build_manager
from ..errors import ConfigError
from ..hookspecs import KINDS
from ..registry import Preset, RegistryEntry, load_registry
from .boundary import one_error


@one_error
def components(kind: str | None = None, *, include_builtin: bool = True,
               manager: PluginManager | None = None) -> list[dict[str, Any]]:
    """The installed plugins and their components, one record per plugin, as ``ptrag plugins
    --json`` prints them (plugin, package, version, builtin, status, error, components with kind,
    name and summary). ``kind`` keeps one kind; ``include_builtin=False`` keeps third-party
    plugins (and optional built-ins whose extra is absent), as ``ptrag plugins`` without --all."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    manager = manager or build_manager()
    out = []
    for record in manager.records:
        if record.builtin and not include_builtin and record.status != "absent":
            continue
        offered = [(k, n) for k, n in record.components if kind is None or k == kind]
        if kind is not None and not offered and record.status not in ("failed", "absent"):
            continue
        item = record.as_dict()
        item["components"] = [{"kind": k, "name": n, "summary": manager.summary(k, n, record)} for k, n in offered]
        out.append(item)
    return out


def builtin_components() -> list[RegistryEntry]:
    """Every built-in component as registry.yaml lists it, kinds in their order (for the docs)."""
    return sorted(load_registry().components, key=lambda e: (KINDS.index(e.kind), e.name))


def presets() -> tuple[dict[str, Preset], str]:
    """The named presets and the default one."""
    registry = load_registry()
    return dict(registry.presets), registry.default_preset


def preset_list(manager: PluginManager | None = None) -> list[dict[str, Any]]:
    """Every preset usable by name (``ptrag plugins --presets``): the built-ins, then the plugins':
    name, where it comes from, its summary and components."""
    manager = manager or build_manager()
    registry = load_registry()
    offered = [(name, "built-in", p) for name, p in registry.presets.items()]
    offered += [(name, f"{record.package} {record.version}".strip(), Preset(name, spec.summary, dict(spec.config)))
                for name, (spec, record) in sorted(manager.plugin_presets.items())]
    out = []
    for name, source, preset in offered:
        parts = {k: (preset.config.get(k) or {}).get("name") if isinstance(preset.config.get(k), dict)
                 else preset.config.get(k) for k in ("retriever", "selector", "generator")}
        out.append({"name": name, "source": source, "default": name == registry.default_preset,
                    "summary": preset.summary, **parts, "budget": preset.config.get("budget")})
    return out
