"""The README's two commands are what CI runs and what a newcomer types."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [block.split("\n```")[0].strip() for block in blocks]


def test_readme_opens_with_run_and_test_commands():
    run, test = _commands()
    assert run.endswith("ptrag run") and "pip install torch==2.13.0" in run
    assert test.endswith("pytest") and 'pip install ".[test,genes,celleval]"' in test


def test_ci_runs_the_readme_test_command():
    _, test = _commands()
    ci = (ROOT / ".ci" / "run").read_text()
    for step in test.split(" && ")[2:]:  # after creating and activating the venv
        assert step in ci, step
