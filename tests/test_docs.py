"""Docs that cannot drift: docs/cli.md and the README tables are generated from the code."""

import re
from pathlib import Path

from ptrag.cli.docgen import components_table, presets_table, render
from ptrag.core.components.manager import build_manager

ROOT = Path(__file__).resolve().parents[1]


def _block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start[^>]*-->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    assert match, f"README.md lacks the {name} block"
    return match.group(1).strip()


def test_cli_reference_matches_the_app():
    assert (ROOT / "docs" / "cli.md").read_text() == render(), \
        "docs/cli.md is stale: python -m ptrag.cli.docgen > docs/cli.md"


def test_readme_tables_match_the_plugins_and_presets():
    readme = (ROOT / "README.md").read_text()
    assert _block(readme, "components") == components_table(), "README components table is stale"
    assert _block(readme, "presets") == presets_table(), "README presets table is stale"


def test_every_builtin_component_is_documented():
    manager = build_manager(entry_points=False)
    docs = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = [f"{r.components}" for r in manager.records
               for kind, name in r.components if f"`{name}`" not in docs]
    assert not missing, f"components without a mention in docs/*.md: {missing}"


def test_every_command_is_in_the_docs():
    cli = (ROOT / "docs" / "cli.md").read_text()
    for command in ("run", "plugins", "predict", "ablate", "report", "data synth", "data inspect",
                    "data split", "genes build"):
        assert f"## `ptrag {command}`" in cli


def test_the_plugin_tutorial_shows_every_file_of_the_example_package_verbatim():
    """A newcomer types the tutorial's code blocks; they must be the package CI installs and tests."""
    root = Path(__file__).parent.parent / "docs"
    blocks = {b.strip() for b in re.findall(r"```[a-z]*\n(.*?)```", (root / "writing-a-plugin.md").read_text(), re.S)}
    package = root / "examples" / "ptrag-pearson"
    files = ["pyproject.toml", "src/ptrag_pearson/__init__.py", "src/ptrag_pearson/retriever.py",
             "src/ptrag_pearson/metric.py", "src/ptrag_pearson/plugin.py", "tests/test_pearson.py"]
    missing = [f for f in files if (package / f).read_text().strip() not in blocks]
    assert not missing, f"docs/writing-a-plugin.md lacks the exact text of {missing}"
