"""One bad-input case, and the CLI arguments the cases share."""

from __future__ import annotations

from dataclasses import dataclass

TINY = ["--set", "data.synth_preset=tiny"]
SMALL = ["--set", "data.synth_preset=tiny", "--set", "model.hidden_dim=16", "--set", "generator.n_layers=1",
         "--set", "generator.n_heads=2", "--set", "data.cell_set_len=8", "--set", "train.batch_size=2",
         "--set", "train.warmup_steps=1", "--set", "compare=[]", "--set", "retriever.k=4", "--device", "cpu"]
PM = ["--preset", "pert-mean", *TINY]


@dataclass
class Case:
    id: str
    args: list[str]  # CLI arguments; {name} is a prepared path, {new} a fresh folder of the case
    expect: str  # a fragment of the one error line, or of the warning when code == 0
    code: int = 1
    plugins: str = ""  # a folder under tests/fixtures put on sys.path (third-party plugins), e.g. "clash"
    why: str = ""
