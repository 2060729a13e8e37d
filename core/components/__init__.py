"""Components: the plugin manager, building components from a configuration, the adapter for
ptrag 0.1's contract, and the checks on what components return."""

from .manager import PluginManager, PluginRecord, build_manager

__all__ = ["PluginManager", "PluginRecord", "build_manager"]
