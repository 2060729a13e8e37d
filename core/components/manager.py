"""The plugin manager: built-ins from registry.yaml, third-party packages from entry points.

Built fresh on demand (:func:`build_manager`), never at import time. A plugin that fails to
import is recorded and skipped so the rest keep working; ``PTRAG_STRICT_PLUGINS=1`` makes
every such problem fatal. Two plugins offering the same (kind, name) is always an error, raised
where that name is used (so ``ptrag plugins`` can still show both providers and every other
component keeps working); in strict mode it is raised at once.
An optional built-in (``extra:`` in registry.yaml) whose extra is not installed is listed as
absent, with the pip command that adds it; that is not a problem, even in strict mode.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from .. import __version__
from ..errors import PluginConflictError, PluginError, UnknownComponentError
from ..hookspecs import (
    ENTRY_POINT_GROUP,
    HOOK_FOR_KIND,
    KINDS,
    PROJECT,
    SPEC_TYPES,
    ComponentSpec,
    PresetSpec,
    PtragHookSpecs,
)
from ..registry import Preset, load_registry
from .fence import FencedError, fenced

STRICT_ENV = "PTRAG_STRICT_PLUGINS"


def strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class PluginRecord:
    """One plugin as ``ptrag plugins`` shows it."""

    name: str  # plugin name (entry point name, or module path for built-ins)
    package: str  # distribution that ships it
    version: str
    builtin: bool
    status: str = "ok"  # ok | failed | warning | conflict | absent (an optional built-in whose extra is not installed)
    error: str = ""
    components: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    presets: list[str] = field(default_factory=list)  # names of the presets it offers

    def as_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.name,
            "package": self.package,
            "version": self.version,
            "builtin": self.builtin,
            "status": self.status,
            "error": self.error,
            "components": [{"kind": k, "name": n} for k, n in self.components],
            "presets": list(self.presets),
        }


@dataclass(frozen=True)
class Provided:
    spec: ComponentSpec
    plugin: PluginRecord


class PluginManager:
    """All components available in this environment, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, records: list[PluginRecord],
                 components: dict[str, dict[str, Provided]], absent: dict[tuple[str, str], str] | None = None,
                 conflicts: dict[tuple[str, str], tuple[str, list[Provided]]] | None = None):
        self.pm = pm
        self.records = records
        self._components = components
        self._absent = absent or {}  # (kind, name) of an absent optional built-in -> how to get it
        #: (kind, name) offered by two plugins -> (the error naming both, the later offers);
        #: get() raises the error, so only what uses that name fails
        self.conflicts = conflicts or {}
        #: presets offered by plugins (name -> (spec, plugin)) and names refused (name -> why)
        self.plugin_presets: dict[str, tuple[PresetSpec, PluginRecord]] = {}
        self.preset_conflicts: dict[str, str] = {}

    def presets(self) -> dict[str, Preset]:
        """The presets plugins offer, as registry presets (config resolution adds them to the built-ins)."""
        return {name: Preset(name, spec.summary, dict(spec.config)) for name, (spec, _) in self.plugin_presets.items()}

    def names(self, kind: str) -> list[str]:
        return sorted(self._components[kind])

    def provided(self, kind: str) -> list[Provided]:
        return [self._components[kind][n] for n in self.names(kind)]

    def get(self, kind: str, name: str) -> ComponentSpec:
        if kind not in KINDS:
            raise UnknownComponentError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
        if (kind, name) in self.conflicts:
            raise PluginConflictError(self.conflicts[(kind, name)][0])
        try:
            return self._components[kind][name].spec
        except KeyError:
            if (kind, name) in self._absent:
                raise UnknownComponentError(f"{kind} {name!r} is {self._absent[kind, name]}") from None
            available = ", ".join(self.names(kind)) or "none installed"
            raise UnknownComponentError(
                f"unknown {kind} {name!r}; available {kind}s: {available}"
            ) from None

    def summary(self, kind: str, name: str, record: PluginRecord) -> str:
        """The one-line summary of ``record``'s component, also when another plugin clashes with it."""
        offers = [self._components[kind][name]] if name in self._components[kind] else []
        offers += self.conflicts.get((kind, name), ("", []))[1]
        return next((p.spec.summary for p in offers if p.plugin is record), "")

    def provider(self, kind: str, name: str) -> PluginRecord:
        self.get(kind, name)
        return self._components[kind][name].plugin

    @property
    def absent(self) -> dict[tuple[str, str], str]:
        """(kind, name) of each component of an optional built-in whose extra is missing -> how to get it."""
        return dict(self._absent)

    @property
    def failed(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "failed"]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if isinstance(exc, FencedError):  # it names the plugin already: what it did is after the colon
        return text[0].partition(": ")[2]
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _load_builtins(modules: Iterable[str], extras: dict[str, str]) -> list[tuple[PluginRecord, Any]]:
    loaded = []
    for module_path in modules:
        record = PluginRecord(_builtin_name(module_path), "ptrag", __version__, builtin=True)
        try:
            with fenced(_who(record), "import"):
                loaded.append((record, importlib.import_module(module_path)))
        except Exception as exc:
            if isinstance(exc, ModuleNotFoundError) and module_path in extras:  # its extra is not installed
                record.status, record.error = "absent", _install_hint(extras[module_path], exc)
            else:  # a built-in whose optional dependency is broken
                record.status, record.error = "failed", _describe(exc)
            loaded.append((record, None))
    return loaded


def _builtin_name(module_path: str) -> str:
    return "ptrag:" + module_path.removeprefix("ptrag.plugins.")


def _install_hint(extra: str, exc: BaseException) -> str:
    return f'optional, not installed ({_describe(exc)}); get it with: pip install "ptrag[{extra}]"'


def _load_entry_points(group: str) -> list[tuple[PluginRecord, Any]]:
    loaded = []
    seen: set[tuple[str, str]] = set()
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        package = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        if (ep.name, ep.value) in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        record = PluginRecord(ep.name, package, version, builtin=False)
        try:
            with fenced(_who(record), "import"):
                loaded.append((record, ep.load()))
        except Exception as exc:
            record.status, record.error = "failed", _describe(exc)
            loaded.append((record, None))
    return loaded


def build_manager(
    *,
    entry_points: bool = True,
    extra_plugins: Iterable[tuple[str, Any]] = (),
    strict: bool | None = None,
) -> PluginManager:
    """Load built-ins, entry points of group ``ptrag`` and ``extra_plugins`` (name, object)."""
    strict = strict_from_env() if strict is None else strict
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(PtragHookSpecs)
    registry = load_registry()
    candidates = _load_builtins(registry.plugin_modules, registry.extras)
    if entry_points:
        candidates += _load_entry_points(ENTRY_POINT_GROUP)
    candidates += [(PluginRecord(name, "(in-process)", "", builtin=False), obj) for name, obj in extra_plugins]
    records = [_register(pm, record, obj) for record, obj in candidates]
    problems = [r for r in records if r.status not in ("ok", "absent")]
    if strict and problems:
        first = problems[0]
        raise PluginError(
            f"plugin {first.name!r} ({first.package}) {first.status}: {first.error} "
            f"[{STRICT_ENV}=1 makes plugin problems fatal]"
        )
    components, conflicts = _collect(pm, {id(obj): record for record, obj in candidates if obj is not None}, strict)
    absent = {r.name: r.error for r in records if r.status == "absent"}
    hints = {(e.kind, e.name): absent[_builtin_name(e.plugin)] for e in registry.components
             if _builtin_name(e.plugin) in absent}
    manager = PluginManager(pm, records, components, hints, conflicts)
    by_obj = {id(obj): record for record, obj in candidates if obj is not None}
    manager.plugin_presets, manager.preset_conflicts = _collect_presets(pm, by_obj, set(registry.presets), strict)
    return manager


def _register(pm: pluggy.PluginManager, record: PluginRecord, obj: Any) -> PluginRecord:
    """Register one loaded plugin object; record pluggy's refusal or hooks that match no spec."""
    if obj is None:
        return record
    try:
        pm.register(obj, name=f"{record.package}:{record.name}")
    except Exception as exc:  # pluggy rejects malformed hook implementations here
        record.status, record.error = "failed", _describe(exc)
        return record
    unknown = [name for name in _hookimpl_names(pm, obj) if not hasattr(PtragHookSpecs, name)]
    if unknown:
        record.status = "warning"
        record.error = f"hook implementation(s) matching no ptrag hook: {', '.join(unknown)}"
    return record


Conflicts = dict[tuple[str, str], tuple[str, list[Provided]]]


def _collect(pm: pluggy.PluginManager, by_obj: dict[int, PluginRecord], strict: bool
             ) -> tuple[dict[str, dict[str, Provided]], Conflicts]:
    """Call every hook implementation separately, so each spec is attributed to its plugin."""
    components: dict[str, dict[str, Provided]] = {kind: {} for kind in KINDS}
    conflicts: Conflicts = {}
    for kind in KINDS:
        hook = getattr(pm.hook, HOOK_FOR_KIND[kind])
        for record, specs in _hook_results(hook, by_obj, strict, lambda specs, kind=kind: _check_specs(specs, kind)):
            for spec in specs:
                _offer(components[kind], conflicts, kind, spec, record, strict)
    # a plugin whose hook raised for one kind must not keep components of another kind
    for record in {id(r): r for r in by_obj.values()}.values():
        if record.status == "failed" and record.components:
            for kind, name in record.components:
                components[kind].pop(name, None)
            record.components = []
    return components, conflicts


def _hook_results(hook: Any, by_obj: dict[int, PluginRecord], strict: bool,
                  check: Callable[[list[Any]], None]) -> Iterator[tuple[PluginRecord, list[Any]]]:
    """Each working plugin's implementation of ``hook``, called separately (so every spec is
    attributed to its plugin), in registration order; one that raises or returns something
    ``check`` refuses marks its plugin failed (fatal when strict)."""
    for impl in reversed(hook.get_hookimpls()):  # registration order
        record = by_obj[id(impl.plugin)]
        if record.status == "failed":
            continue
        try:
            with fenced(_who(record), f"hook {hook.name}"):
                specs = list(impl.function() or [])
            check(specs)
        except Exception as exc:
            if strict:
                raise PluginError(f"plugin {record.name!r} ({record.package}): {_describe(exc)}") from exc
            record.status, record.error = "failed", _describe(exc)
            continue
        yield record, specs


def _check_presets(specs: list[Any]) -> None:
    bad = next((type(x).__name__ for x in specs if not isinstance(x, PresetSpec)), None)
    if bad:
        raise TypeError(f"hook ptrag_presets returned {bad}, not a PresetSpec")


def _collect_presets(pm: pluggy.PluginManager, by_obj: dict[int, PluginRecord], builtin: set[str], strict: bool
                     ) -> tuple[dict[str, tuple[PresetSpec, PluginRecord]], dict[str, str]]:
    """Every plugin's presets; a name that is a built-in preset or offered twice is refused, naming
    the plugins (only what uses that name fails, unless strict)."""
    offered: dict[str, tuple[PresetSpec, PluginRecord]] = {}
    refused: dict[str, str] = {}
    for record, specs in _hook_results(pm.hook.ptrag_presets, by_obj, strict, _check_presets):
        for spec in specs:
            record.presets.append(spec.name)
            _offer_preset(offered, refused, spec, record, spec.name in builtin, strict)
    return offered, refused


def _offer_preset(offered: dict[str, tuple[PresetSpec, PluginRecord]], refused: dict[str, str], spec: PresetSpec,
                  record: PluginRecord, builtin: bool, strict: bool) -> None:
    """A built-in preset keeps its name (the plugin's is ignored, and the plugin shows the conflict);
    two plugins offering one name make that name an error wherever it is used."""
    other = offered.pop(spec.name, (None, None))[1]
    if not builtin and other is None and spec.name not in refused:
        offered[spec.name] = (spec, record)
        return
    clash = "the built-in preset" if builtin else _who(other) if other else "another plugin"
    message = f"preset {spec.name!r} is offered by both {clash} and {_who(record)}; uninstall one of them or rename " \
              "the preset"
    if strict:
        raise PluginConflictError(message)
    if not builtin:
        refused.setdefault(spec.name, message)
    for who in (other, record):
        if who is not None and who.status in ("ok", "warning"):
            who.status, who.error = "conflict", message


def _offer(offered: dict[str, Provided], conflicts: Conflicts, kind: str, spec: ComponentSpec,
           record: PluginRecord, strict: bool) -> None:
    """Add one spec; a name another plugin already offers is a conflict naming both."""
    record.components.append((kind, spec.name))
    if spec.name not in offered:
        offered[spec.name] = Provided(spec, record)
        return
    other = offered[spec.name].plugin
    message = (f"{kind} {spec.name!r} is offered by both {_who(other)} and {_who(record)}; "
               "uninstall one of them or rename the component")
    if strict:
        raise PluginConflictError(message)
    conflicts.setdefault((kind, spec.name), (message, []))[1].append(Provided(spec, record))
    for who in (other, record):
        if who.status in ("ok", "warning"):
            who.status, who.error = "conflict", message


def _who(record: PluginRecord) -> str:
    return f"plugin {record.name!r} (package {record.package} {record.version})".replace(" )", ")")


def _hookimpl_names(pm: pluggy.PluginManager, obj: Any) -> list[str]:
    return [name for name in dir(obj) if pm.parse_hookimpl_opts(obj, name) is not None]


def _check_specs(specs: list[Any], kind: str) -> None:
    expected = SPEC_TYPES[kind]
    for spec in specs:
        if not isinstance(spec, ComponentSpec):
            raise TypeError(f"hook {HOOK_FOR_KIND[kind]} returned {type(spec).__name__}, not a component spec")
        if spec.kind != kind:
            raise TypeError(
                f"hook {HOOK_FOR_KIND[kind]} returned a {spec.kind or 'kind-less'} spec {spec.name!r}; "
                f"use {expected.__name__}"
            )
