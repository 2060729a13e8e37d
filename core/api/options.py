"""The options of a run, declared once: ``ptrag.configure``/``ptrag.run`` keywords, ``ptrag run``
flags, their help text and the config key each one sets.

The API functions get their keyword signature from :data:`RUN_OPTIONS` (``signature``), the
command line builds its typer options from the same records, and :func:`option_overrides` turns
the given values into configuration overrides, so adding an option is one line here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DataConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class Option:
    """One run option. ``target`` is the dotted config key it sets (None: resolved specially)."""

    name: str
    flags: tuple[str, ...]
    help: str
    type: Any = str  # the command line's type; the API also takes mappings for components
    target: str | None = None
    api_type: Any = None  # the API's annotation when it differs (e.g. str | Mapping for a component)
    min: int | None = None

    @property
    def annotation(self) -> Any:
        return self.api_type if self.api_type is not None else self.type | None

    @property
    def described(self) -> str:
        """The help with the default of the ``data.*`` key it sets (other keys follow the preset)."""
        default = _data_default(self.target) if self.target else None
        return f"{self.help} Default: {default}." if default not in (None, "") else self.help


def _data_default(target: str) -> Any:
    section, _, key = target.partition(".")
    if section != "data" or key not in DataConfig.model_fields:
        return None
    return DataConfig.model_fields[key].default


COMPONENT = "str | Mapping[str, Any] | None"

RUN_OPTIONS: tuple[Option, ...] = (
    Option("preset", ("--preset", "-p"), "Named preset from registry.yaml (see `ptrag plugins --all`)."),
    Option("budget", ("--budget", "-b"), "Named training budget from registry.yaml: converge (the learned presets' "
           "default: until validation stops improving), demo (400 steps, a quick look) or paper (the authors' "
           "50,000 steps of 64 x 64 sets, for a GPU)."),
    Option("data", ("--data",), "An .h5ad screen; default: the built-in dataset.", Path, "data.path",
           api_type="str | os.PathLike | None"),
    Option("split", ("--split",), "Split file (STATE TOML or YAML); default: random few-shot.", Path, "data.split",
           api_type="str | os.PathLike | None"),
    Option("retriever", ("--retriever",), "Retriever name (stage 1).", api_type=COMPONENT),
    Option("selector", ("--selector",), "Selector name (stage 2).", api_type=COMPONENT),
    Option("generator", ("--generator",), "Generator name.", api_type=COMPONENT),
    Option("steps", ("--steps",), "Training steps (train.steps).", int, "train.steps", min=0),
    Option("seed", ("--seed",), "Seed for the split, sampling and model (the built-in data follows data.seed).",
           int, "seed"),
    Option("device", ("--device",), "auto | cpu | cuda | mps.", str, "device"),
    Option("out", ("--out", "-o"), "Run folder; default: a new folder under runs/.", Path, "output.dir",
           api_type="str | os.PathLike | None"),
    Option("resume", ("--resume",), "Continue an interrupted run folder from its checkpoint.pt (same result on "
           "CPU); overrides may change only device and train.threads.", Path, api_type="str | os.PathLike | None"),
    Option("pert_col", ("--pert-col",), "obs column with the perturbed gene (data.pert_col).", str, "data.pert_col"),
    Option("context_col", ("--context-col",), "obs column with the cell line (data.context_col).", str,
           "data.context_col"),
    Option("batch_col", ("--batch-col",), "obs column with the batch (data.batch_col).", str, "data.batch_col"),
    Option("control_label", ("--control-label",), "Label of control cells (data.control_label).", str,
           "data.control_label"),
    Option("embed_key", ("--embed-key",), "obsm key with log-normalised expression, or X (data.embed_key).", str,
           "data.embed_key"),
)
#: options of the run call itself (not configuration keys): declared here too, so the command line
#: and the API describe them in the same words
CONFIG = Option("config", ("--config", "-c"), "Experiment YAML.", Path, api_type="Any")
SET = Option("set", ("--set",), "Override any key: --set train.steps=200 (repeatable).", list[str],
             api_type="Sequence[str]")
OVERWRITE = Option("overwrite", ("--overwrite",), "Replace the run that --out holds: the files ptrag wrote there "
                   "(listed in its .ptrag-run) are deleted first, and a folder that also holds other files is refused; "
                   "without it a folder holding another or a finished run is refused.", bool, api_type="bool")
COMPONENT_OPTIONS = ("retriever", "selector", "generator")
BY_NAME = {option.name: option for option in RUN_OPTIONS}


def _set_key(extra: dict[str, Any], dotted: str, value: Any) -> None:
    node = extra
    *parents, last = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, Mapping):
            raise ConfigError(f"{part}=: expected a mapping of {part}.* keys, got {type(child).__name__}")
        node[part] = child = dict(child)
        node = child
    node[last] = str(value) if isinstance(value, Path) else value


def option_overrides(values: Mapping[str, Any], extra: dict[str, Any]) -> dict[str, str | None]:
    """Write the options with a config key into ``extra`` (nested overrides); return the
    component names given as plain names (a mapping with parameters goes into ``extra``)."""
    names: dict[str, str | None] = {}
    for name, value in values.items():
        if value is None or name not in BY_NAME:
            continue
        option = BY_NAME[name]
        if name in COMPONENT_OPTIONS:
            if isinstance(value, Mapping):
                extra[name] = dict(value)
            else:
                names[name] = str(value)
        elif option.target is not None:
            _set_key(extra, option.target, value)
    return names


def signature(func: Callable[..., Any], before: Sequence[inspect.Parameter] = (),
              after: Sequence[inspect.Parameter] = ()) -> Callable[..., Any]:
    """Give ``func`` (which takes ``**options``) the keyword signature of :data:`RUN_OPTIONS`,
    so ``help()``, IDEs and the documentation show every option."""
    kw = inspect.Parameter.KEYWORD_ONLY
    taken = {p.name for p in (*before, *after)}
    params = [*before, *(inspect.Parameter(o.name, kw, default=None, annotation=o.annotation)
                         for o in RUN_OPTIONS if o.name not in taken), *after]
    func.__signature__ = inspect.Signature(params)
    return func


def unknown_options(values: Mapping[str, Any], known: Sequence[str]) -> None:
    """An unknown keyword is an error that lists the options and config sections."""
    unknown = sorted(k for k in values if k not in BY_NAME and k not in known)
    if unknown:
        raise ConfigError(f"unknown keyword argument(s) {', '.join(unknown)}; config keys: {', '.join(known)}; "
                          f"options: {', '.join(BY_NAME)} (data keys: set=['data.KEY=VALUE'])")
