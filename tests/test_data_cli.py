"""`ptrag data synth|inspect|split` end to end on the tiny preset."""

from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.config import DataConfig
from ptrag.core.data.loading import read_screen
from ptrag.core.data.split import read_split

runner = CliRunner()


def test_synth_inspect_split(tmp_path):
    h5 = tmp_path / "screen.h5ad"
    r = runner.invoke(app, ["data", "synth", "--preset", "tiny", "-o", str(h5), "--seed", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["data", "inspect", str(h5)])
    assert r.exit_code == 0, r.output
    for text in ("obsm['X_hvg']", "k562", "rpe1", "controls", "gene embeddings", "zeros"):
        assert text in r.output
    toml = tmp_path / "split.toml"
    r = runner.invoke(app, ["data", "split", str(h5), "-o", str(toml), "--holdout", "rpe1", "--seed", "1"])
    assert r.exit_code == 0, r.output
    split = read_split(toml, read_screen(h5, DataConfig()))
    assert split.test and {c for _, c in split.test} == {"rpe1"} and split.notes == []


def test_inspect_bad_key_is_one_line(tmp_path):
    h5 = tmp_path / "screen.h5ad"
    runner.invoke(app, ["data", "synth", "--preset", "tiny", "-o", str(h5)])
    r = runner.invoke(app, ["data", "inspect", str(h5), "--embed-key", "X_nope"])
    assert r.exit_code == 1
    assert "no expression under obsm['X_nope']; available: X, X_hvg" in r.output and "Traceback" not in r.output
