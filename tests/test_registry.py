from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.registry import load_registry


def test_registry_matches_the_hooks():
    manager = build_manager(entry_points=False)
    for entry in load_registry().components:
        if (entry.kind, entry.name) in manager.absent:  # an optional built-in whose extra is not installed
            assert entry.extra and f'pip install "ptrag[{entry.extra}]"' in manager.absent[entry.kind, entry.name]
            continue
        spec = manager.get(entry.kind, entry.name)
        assert spec.summary == entry.summary, (entry.kind, entry.name)
        assert manager.provider(entry.kind, entry.name).name == "ptrag:" + entry.plugin.removeprefix("ptrag.plugins.")


def test_every_preset_resolves():
    manager = build_manager(entry_points=False)
    registry = load_registry()
    assert {"pert-mean", "control"} <= set(registry.presets)
    for name in registry.presets:
        cfg = resolve_config(None, preset=name, manager=manager)
        assert cfg.preset == name
