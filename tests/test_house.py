"""The house rules the linters do not check: short functions, one mechanism each, names written once.

(ruff and lint-imports, which hold the style and the layering, run in CI: .ci/run.)
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80


def _python_files(*tops: str) -> list[Path]:
    return [p for top in tops for p in sorted((ROOT / top).rglob("*.py")) if "build" not in p.parts]


def test_no_function_in_the_engine_plugins_or_cli_is_longer_than_80_lines():
    long = []
    for path in _python_files("core", "plugins", "cli"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_built_in_components_are_named_only_in_the_registry():
    """A built-in class carries no ``name = "..."``: its name and summary live in registry.yaml."""
    registered = {c["name"] for c in yaml.safe_load((ROOT / "registry.yaml").read_text())["components"]}
    written = []
    for path in _python_files("plugins"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "name" for t in stmt.targets) \
                            and isinstance(stmt.value, ast.Constant) and stmt.value.value in registered:
                        written.append(f"{path.relative_to(ROOT)}: {node.name}.name = {stmt.value.value!r}")
    assert not written, written


def test_the_repository_stands_on_its_own():
    """No file points at the team's planning notes outside the repository."""
    needle = "DESIGN" + ".md"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (an sdist): every text file
        tracked = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
    citing = [name for name in tracked if (ROOT / name).suffix in (".py", ".md", ".yaml", ".toml", ".txt", "")
              and (ROOT / name).is_file() and needle in (ROOT / name).read_text(errors="ignore")]
    assert not citing, citing
