"""Progress where the output goes: plain lines when not on a terminal, warnings through it once."""

import warnings

from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.progress import LoopProgress


def test_plain_lines_every_tenth_with_step_loss_keep_speed_and_time_left():
    lines = []
    with LoopProgress("training", 100, log=lines.append, terminal=False) as progress:
        for step in range(1, 101):
            progress.update(step, loss=0.5, keep=0.25, cells_per_s=1234.0)
    assert len(lines) == 10
    assert lines[0].startswith("training 10/100 (10%) loss 0.5 keep 0.25 1,234 cells/s, ") and lines[0].endswith("left")
    assert lines[-1].startswith("training 100/100 (100%)") and " in " in lines[-1]


def test_a_resumed_loop_counts_from_where_it_was():
    lines = []
    with LoopProgress("training", 40, 20, log=lines.append, terminal=False) as progress:
        for step in range(21, 41):
            progress.update(step)
    assert [line.split()[1] for line in lines] == ["24/40", "28/40", "32/40", "36/40", "40/40"]


def test_warnings_in_the_loop_are_one_line_each_once(capsys):
    lines = []
    with LoopProgress("predicting", 3, log=lines.append, terminal=False) as progress:
        for i in range(3):
            warnings.warn("something odd", UserWarning, stacklevel=1)
            progress.update(i + 1)
    notes = [line for line in lines if line.startswith("warning:")]
    assert len(notes) == 1 and notes[0].startswith("warning: UserWarning: something odd (")
    assert capsys.readouterr().err == ""  # nothing through Python's own stderr printing


def test_on_a_terminal_warnings_print_above_the_bar(capsys):
    lines = []
    with LoopProgress("training", 2, log=lines.append, terminal=True) as progress:
        warnings.warn("careful", UserWarning, stacklevel=1)
        progress.update(1, loss=1.0)
        progress.update(2, loss=0.9)
    assert lines == []  # the bar's console, not the plain log
    assert capsys.readouterr().out.count("warning: UserWarning: careful") == 1


def test_a_piped_run_prints_training_and_prediction_progress(tmp_path):
    result = CliRunner().invoke(app, ["run", "--preset", "state", "--set", "data.synth_preset=tiny", "--set",
                                      "model.hidden_dim=16", "--set", "generator.n_heads=2", "--set", "compare=[]",
                                      "--steps", "20", "--set", "train.val_every=10", "--set", "train.log_every=2",
                                      "--out", str(tmp_path / "r")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    training = [line.strip() for line in result.output.splitlines() if line.strip().startswith("training ")]
    assert [line.split()[1] for line in training if "/" in line.split()[1]] == \
        ["2/20", "4/20", "6/20", "8/20", "10/20", "12/20", "14/20", "16/20", "18/20", "20/20"]
    assert "loss" in training[1] and "cells/s" in training[1]
    assert any(line.strip().startswith("predicting 9/9 (100%)") for line in result.output.splitlines())
