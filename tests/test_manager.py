import pytest

from ptrag.core.components.manager import build_manager
from ptrag.core.errors import PluginConflictError, PluginError, UnknownComponentError
from ptrag.core.hookspecs import ComponentParams, MetricSpec, RetrieverSpec, hookimpl
from ptrag.core.registry import load_registry


def test_builtins_are_registered_through_hooks():
    manager = build_manager(entry_points=False)
    listed = {(e.kind, e.name) for e in load_registry().components}
    provided = {(k, n) for r in manager.records for k, n in r.components}
    assert listed - set(manager.absent) == provided  # absent: optional built-ins without their extra
    assert all(r.builtin and r.status in ("ok", "absent") for r in manager.records)


def test_fake_plugin_is_discovered_and_broken_one_listed_as_failed(fake_plugins):
    manager = build_manager()
    assert "fake-dot" in manager.names("retriever")
    assert "mean-abs" in manager.names("metric")
    assert manager.provider("retriever", "fake-dot").package == "ptrag-fake-plugin"
    assert manager.provider("retriever", "fake-dot").version == "0.1.0"
    broken = [r for r in manager.failed if r.package == "ptrag-broken-plugin"]
    assert len(broken) == 1
    assert "ModuleNotFoundError" in broken[0].error
    assert "ptrag_dependency_that_does_not_exist" in broken[0].error
    # the rest keep working
    assert "pert-mean" in manager.names("generator")


def test_strict_mode_makes_a_failed_import_fatal(fake_plugins, monkeypatch):
    monkeypatch.setenv("PTRAG_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="ptrag-broken-plugin"):
        build_manager()


def test_name_clash_names_both_providers_where_the_name_is_used(clash_plugin, monkeypatch):
    manager = build_manager()  # every other component keeps working
    assert manager.get("generator", "control").name == "control"
    with pytest.raises(PluginConflictError) as info:
        manager.get("generator", "pert-mean")
    message = str(info.value)
    assert "'pert-mean'" in message
    assert "ptrag-clash-plugin" in message and "ptrag:generators.baselines" in message
    both = [r for r in manager.records if ("generator", "pert-mean") in r.components]
    assert {r.package for r in both} == {"ptrag", "ptrag-clash-plugin"} and {r.status for r in both} == {"conflict"}
    assert {manager.summary("generator", "pert-mean", r) for r in both} == {
        "a clashing generator", "Baseline: control cells plus the cell line's mean training response"}
    monkeypatch.setenv("PTRAG_STRICT_PLUGINS", "1")
    with pytest.raises(PluginConflictError, match="ptrag-clash-plugin"):
        build_manager()


def test_unknown_hook_is_a_warning_then_an_error_in_strict_mode(odd_plugin, monkeypatch):
    manager = build_manager()
    odd = [r for r in manager.records if r.package == "ptrag-odd-plugin"][0]
    assert odd.status == "warning" and "ptrag_retreivers" in odd.error
    monkeypatch.setenv("PTRAG_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="ptrag_retreivers"):
        build_manager()


def test_unknown_component_lists_available_names():
    manager = build_manager(entry_points=False)
    with pytest.raises(UnknownComponentError) as info:
        manager.get("generator", "nosuch")
    assert str(info.value) == (
        "unknown generator 'nosuch'; available generators: " + ", ".join(manager.names("generator"))
    )


class _WrongKind:
    @hookimpl
    def ptrag_retrievers(self):
        return [MetricSpec("oops", lambda p, c: None, ComponentParams, "a metric in the retriever hook")]


class _Raising:
    @hookimpl
    def ptrag_metrics(self):
        raise RuntimeError("boom")

    @hookimpl
    def ptrag_retrievers(self):
        return [RetrieverSpec("half", lambda p, c: None, ComponentParams, "should be withdrawn")]


def test_bad_hook_results_fail_that_plugin_only():
    manager = build_manager(entry_points=False, extra_plugins=[("wrong", _WrongKind()), ("raising", _Raising())])
    status = {r.name: (r.status, r.error) for r in manager.records if not r.builtin}
    assert status["wrong"][0] == "failed"
    assert "returned a metric spec 'oops'; use RetrieverSpec" in status["wrong"][1]
    assert status["raising"] == ("failed", "RuntimeError: boom")
    assert "oops" not in manager.names("retriever") and "half" not in manager.names("retriever")
    assert "pert-mean" in manager.names("generator")


def test_spec_validation():
    with pytest.raises(TypeError):
        RetrieverSpec("x", factory="not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RetrieverSpec("", lambda p, c: None)
    with pytest.raises(TypeError):
        RetrieverSpec("x", lambda p, c: None, params_model=dict)  # type: ignore[arg-type]


class _Presets:
    def __init__(self, *specs):
        self.specs = specs

    @hookimpl
    def ptrag_presets(self):
        return list(self.specs)


def _preset(name):
    from ptrag.core.hookspecs import PresetSpec

    return PresetSpec(name, {"retriever": {"name": "none"}, "selector": {"name": "none"},
                             "generator": {"name": "pert-mean"}}, f"{name} from a plugin")


def test_a_plugin_preset_runs_by_name_like_a_built_in(oracle_package):
    from ptrag.core.config import resolve_config

    manager = build_manager()
    assert {"oracle", "backbone-twin"} <= set(manager.presets())
    record = next(r for r in manager.records if r.package == "ptrag-oracle")
    assert record.presets == ["oracle", "backbone-twin"] and record.status == "ok"
    cfg = resolve_config(None, preset="backbone-twin", manager=manager)
    assert cfg.preset == "backbone-twin" and cfg.generator.name == "gene-other-lines"


def test_a_plugin_preset_never_replaces_a_built_in_and_two_plugins_clash_by_name():
    from ptrag.core.config import resolve_config
    from ptrag.core.errors import ConfigError

    manager = build_manager(entry_points=False, extra_plugins=[
        ("shadow", _Presets(_preset("state"))), ("one", _Presets(_preset("mine"))), ("two", _Presets(_preset("mine")))])
    assert resolve_config(None, preset="state", manager=manager).generator.name == "set_transformer"  # built-in kept
    shadow = next(r for r in manager.records if r.name == "shadow")
    assert shadow.status == "conflict" and "built-in preset" in shadow.error
    with pytest.raises(ConfigError, match="preset 'mine' is offered by both plugin '(one|two)'"):
        resolve_config(None, preset="mine", manager=manager)


def test_a_preset_hook_returning_something_else_fails_only_that_plugin():
    manager = build_manager(entry_points=False, extra_plugins=[("odd", _Presets("not a spec"))])
    odd = next(r for r in manager.records if r.name == "odd")
    assert odd.status == "failed" and "PresetSpec" in odd.error
    assert "state" in manager.names("generator") or "set_transformer" in manager.names("generator")
