"""ptrag installs under one import name; no bare `core`/`cli`/`plugins` in site-packages."""

from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _installed_distribution() -> metadata.Distribution:
    # a source checkout can hold a ptrag.egg-info from the build; the installed one has a RECORD
    for dist in metadata.distributions(name="ptrag"):
        if dist.read_text("RECORD") is not None:
            return dist
    raise AssertionError("ptrag is not installed (no .dist-info with a RECORD)")


def test_installed_files_live_under_ptrag():
    files = _installed_distribution().files or []
    tops = {
        f.parts[0]
        for f in files
        if not f.parts[0].endswith((".dist-info", ".egg-info"))
        and not f.name.startswith("__editable__")  # an editable install's finder and .pth
        and f.parts[0] != ".."  # the console script in bin/
    }
    assert tops <= {"ptrag"}, f"files outside ptrag/: {sorted(tops)}"
    assert "core" not in tops and "cli" not in tops and "plugins" not in tops


def test_every_package_directory_is_declared():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        "ptrag." + ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("core", "plugins", "cli")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found <= declared, f"add to pyproject [tool.setuptools] packages: {sorted(found - declared)}"


def test_the_gene_tables_ship_as_package_data():
    """Both gene-embedding tables and their READMEs match a package-data pattern, so wheel and sdist carry them."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    data = ROOT / "core" / "data"
    files = [p.relative_to(data).as_posix() for p in (data / "resources").iterdir() if p.is_file()]
    assert {"resources/builtin_gene_embeddings.npz", "resources/human_gene_embeddings.npz",
            "resources/human_gene_embeddings.README.md"} <= set(files)
    assert [f for f in files if not any(fnmatch(f, p) for p in patterns["ptrag.core.data"])] == []


def test_registry_ships_with_the_package():
    from ptrag.core.registry import REGISTRY_PATH

    assert REGISTRY_PATH.is_file()


def test_ptrag_is_a_regular_package_with_its_api():
    """The root __init__.py installs as ptrag and re-exports ptrag.core.api; the subpackages still work."""
    import ptrag
    import ptrag.cli.app
    import ptrag.core.api
    import ptrag.plugins.retrievers.exact

    assert Path(ptrag.__file__).name == "__init__.py"
    assert Path(ptrag.__file__).parent == Path(ptrag.core.__file__).parent.parent
    assert ptrag.run is ptrag.core.api.run and ptrag.core.errors.PtragError is ptrag.PtragError


def test_python_dash_m_ptrag_is_the_ptrag_command():
    """`python -m ptrag` (and so `torchrun -m ptrag run ...`) runs the CLI."""
    import subprocess
    import sys

    from ptrag.core import __version__

    done = subprocess.run([sys.executable, "-m", "ptrag", "--version"], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0 and done.stdout.strip() == f"ptrag {__version__}"
