"""`ptrag data synth|inspect|split` end to end on the tiny preset."""

from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.config import DataConfig, resolve_config
from ptrag.core.data.loading import load_screen, read_screen
from ptrag.core.data.split import read_split, resolve_split

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


def test_data_split_and_run_hold_out_the_same_line_and_perturbations(tmp_path):
    """One rule for the default held-out line: `data split FILE --seed S` writes exactly the split
    `run --data FILE --seed S` makes (`tiny` ties k562 and rpe1 on perturbations; a file with one
    rpe1 group fewer does not)."""
    from ptrag.core.data.synth import synth_screen

    full = synth_screen("tiny", 0)
    gene = sorted(set(full.obs.gene) - {"non-targeting"})[0]
    fewer = full[~((full.obs.cell_line == "rpe1") & (full.obs.gene == gene))].copy()
    for name, adata in (("tie", full), ("fewer", fewer)):
        h5 = tmp_path / f"{name}.h5ad"
        adata.write_h5ad(h5)
        for seed in (0, 3):
            toml = tmp_path / f"{name}-{seed}.toml"
            r = runner.invoke(app, ["data", "split", str(h5), "-o", str(toml), "--seed", str(seed)])
            assert r.exit_code == 0, r.output
            cfg = resolve_config(None, preset="pert-mean", sets=[f"data.path={h5}", f"seed={seed}"])
            data = load_screen(cfg.data)
            written, run = read_split(toml, data), resolve_split(cfg.data, data, cfg.seed)  # as run_experiment
            assert (written.test, written.val) == (run.test, run.val) and run.test
        lines = {c for _, c in run.test}
        assert lines == ({"rpe1"} if name == "tie" else {"k562"})
