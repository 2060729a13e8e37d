"""Experiment configuration: pydantic models, YAML, presets and command-line overrides.

Resolution order (later wins): built-in defaults, the preset (``--preset``, else the YAML's
``preset:`` key, else registry.yaml's default), the training budget (``--budget``, else the YAML's
``budget:`` key, else the preset's), the YAML file, ``--retriever/--selector/--generator`` flags,
then ``--set dotted.key=value``. Every component's parameters are then
validated by that component's own pydantic model, so typos fail before any work starts.
"""

from __future__ import annotations

import copy
import numbers
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .errors import ConfigError
from .markup import load_yaml, read_text
from .registry import Registry, load_registry

COMPONENT_SECTIONS = ("retriever", "selector", "generator")
#: a run's metrics unless configured: distributional (50 PCs) and expression/DE kinds (docs/metrics.md)
DEFAULT_METRICS = ("w1", "w2", "energy", "mmd", "mse", "pearson-delta", "pearson-delta-de",
                   "de-overlap", "de-direction", "discrimination")


#: the largest seed: NumPy's legacy global generator (seeded with every run seed) takes 0 <= seed < 2**32
SEED_MAX = 2**32 - 1
SEED_RANGE = f"must be an integer from 0 to {SEED_MAX} = 2**32 - 1"


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # YAML's yes/true would otherwise pass as the seed 1
        raise PydanticCustomError("seed_type", "a seed " + SEED_RANGE + ", not true/false")
    return value


def _seed_in_range(value: int) -> int:
    if not 0 <= value <= SEED_MAX:
        raise PydanticCustomError("seed_range", SEED_RANGE)
    return value


#: a seed checked once, where the configuration is read, not deep inside NumPy or torch
Seed = Annotated[int, BeforeValidator(_not_bool), AfterValidator(_seed_in_range)]


def check_seed(value: Any, option: str) -> int:
    """A seed given outside a configuration (``ptrag data synth|split --seed``, their API), checked
    like the configuration's: one line naming the option and the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= int(value) <= SEED_MAX:
        raise ConfigError(f"{option}: {SEED_RANGE} (got {value!r})")
    return int(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ComponentChoice(_Strict):
    """A component by name plus its parameters (validated later by the component's model)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any, where: str) -> ComponentChoice:
        if isinstance(raw, ComponentChoice):
            return raw
        if isinstance(raw, str):
            return cls(name=raw)
        if isinstance(raw, dict):
            if "name" not in raw:
                raise ConfigError(f"{where}: a component needs a 'name' key (got {sorted(raw)})")
            body = dict(raw)
            name = body.pop("name")
            params = dict(body.pop("params", {}) or {})
            params.update(body)  # flat form {name: faiss, k: 32} and nested params both work
            return cls(name=str(name), params=params)
        raise ConfigError(f"{where}: expected a component name or mapping, got {type(raw).__name__}")

    def to_yaml(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


class DataConfig(_Strict):
    path: str | None = Field(None, description="an .h5ad file; empty = the built-in dataset")
    synth_preset: Literal["tiny", "demo", "screen", "large"] = "demo"
    synth_family: Literal["v3", "grn"] = Field(
        "v3", description="simulator family of the built-in dataset: v3 (complex programs, cell states) or grn "
        "(a line-specific regulatory network, guides of different efficiency); docs/data.md")
    seed: Seed = Field(0, description="seed of the built-in dataset (not the run seed, so every run seed sees the "
                       "same data; vary it on purpose, e.g. in an ablation grid); 0 to 2**32 - 1")
    pert_col: str = "gene"
    context_col: str = "cell_line"
    batch_col: str | None = "gem_group"
    control_label: str = "non-targeting"
    control_labels: list[str] = Field(
        default_factory=list, description="more labels of control cells (e.g. a second spelling such as NT): their "
        "cells are counted as data.control_label's; docs/data.md#control-like-labels")
    allow_control_like: list[str] = Field(
        default_factory=list, description="labels that look like controls (non-targeting, NT, control, ...) but are "
        "real perturbations; any other such label stops a run (docs/data.md#control-like-labels)")
    modality_col: str | None = Field(None, description="obs column naming each perturbation's modality (e.g. "
                                     "perturbation_type: CRISPRi, CRISPRa); evidence is pooled only between cell lines "
                                     "of one modality (docs/data.md#modality-and-combinations)")
    combination_sep: str | None = Field("+", description="separator of combinatorial perturbations (A+B): those "
                                        "groups are left out with a note; null: labels are single genes as given")
    embed_key: str = Field("X_hvg", description="obsm key holding expression, or 'X' for .X")
    gene_embeddings: str | None = Field(
        None, description="gene-embedding table: a file, builtin:human (every human protein-coding gene) or "
        "builtin:demo (the built-in data's genes); empty or auto = builtin:demo when it covers every perturbed gene, "
        "else builtin:human (docs/genes.md)")
    missing_embedding: Literal["drop", "zero", "error"] = "drop"
    duplicate_embeddings: Literal["error", "first"] = Field(
        "error", description="a gene-embedding table that lists a gene twice (symbols match case-insensitively): "
        "error, or first (keep the first row of each, and say so)")
    max_dropped_test: float = Field(0.1, ge=0, le=1, description="largest share of the test groups that "
                                    "missing_embedding=drop may remove before the run stops; 1 accepts any drop")
    split: str | None = Field(None, description="STATE TOML / YAML split; empty = random few-shot")
    split_dataset: str | None = Field(None, description="dataset name in a split file naming several")
    holdout_context: str | None = Field(None, description="cell line held out (random split)")
    test_fraction: float = Field(0.3, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    min_cells: int = Field(10, ge=1)
    cell_set_len: int = Field(64, ge=1)
    gene_sets: str | None = Field(None, description="GMT gene sets (complexes, pathways) for the retrieval "
                                     "co-annotation summary; `ptrag genes sets` writes one from GO")
    dtype: Literal["float32", "float16"] = Field(
        "float32", description="precision of the expression held in memory; float16 halves it (rows reach models "
        "and metrics as float32; log1p values up to 10 round by at most 0.004)")
    backed: bool = Field(False, description="keep the expression matrix in the .h5ad and read the rows each step "
                         "needs (control cells stay in memory); needs data.path")

    @model_validator(mode="after")
    def _declared_once(self) -> DataConfig:
        both = sorted(set(self.control_labels) & set(self.allow_control_like))
        if both:
            raise PydanticCustomError("control_like", "label(s) {both} are in both data.control_labels and "
                                      "data.allow_control_like; a label is either control cells or a perturbation",
                                      {"both": ", ".join(map(repr, both))})
        roles = {"data.pert_col": self.pert_col, "data.context_col": self.context_col,
                 "data.batch_col": self.batch_col, "data.modality_col": self.modality_col}
        named = [(key, col) for key, col in roles.items() if col is not None]
        for i, (key, col) in enumerate(named):
            other = next((k for k, c in named[:i] if c == col), None)
            if other is not None:
                raise PydanticCustomError("same_column", "{other} and {key} both name obs column {col}; each "
                                          "role (perturbation, cell line, batch, modality) needs its own column",
                                          {"other": other, "key": key, "col": repr(col)})
        return self


class TrainConfig(_Strict):
    steps: int = Field(1000, ge=0)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(50, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    optimizer: Literal["adamw", "adam"] = Field("adamw", description="adam: the authors' optimiser (no weight decay "
                                                  "unless weight_decay > 0, coupled as in torch.optim.Adam)")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="learning rate after the linear warm-up: cosine decay to 0 at train.steps, or constant")
    val_every: int = Field(100, ge=1)
    patience: int = Field(0, ge=0, description="validations without improvement before stopping; 0 = never")
    min_delta: float = Field(0.0, ge=0, lt=1, description="relative gain a validation must show to count as an "
                             "improvement (0.002: 0.2%), so a noisy curve does not keep resetting the patience")
    loss: Literal["energy", "mse", "energy+mse", "pc-energy", "pc-energy+mse"] = Field(
        "energy", description="energy: Euclidean energy distance over all genes; pc-energy: mean over each "
        "line's top 50 PCs (fitted on training cells) of the 1-D energy distance, as the evaluation scores; "
        "+mse adds the squared error of the set means")
    log_every: int = Field(10, ge=1, description="steps between log.jsonl records / progress updates")
    val_sets: int = Field(2, ge=1, description="cell sets drawn per validation group")
    eval_batch_size: int = Field(32, ge=1, description="cell sets per forward pass in validation/prediction")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = torch's default (all cores)")
    precision: Literal["auto", "bf16", "float32"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, float32 elsewhere; bf16: bf16 autocast on any device (CPU "
        "included); float32: never")
    compile: bool = Field(False, description="torch.compile the training step's model (pays on a GPU over long runs; "
                          "compiling takes tens of seconds)")
    find_unused_parameters: bool = Field(False, description="torchrun only: let DistributedDataParallel look for "
                                         "parameters a step does not use (needed by models that skip some; slower)")


class ModelConfig(_Strict):
    """How the PT-RAG composition is wired (sizes shared by selector, generator and candidates)."""

    hidden_dim: int = Field(128, ge=1, description="H: cell states, query, candidates")
    context: Literal["embedding", "response", "both"] = Field(
        "embedding", description="candidate features: gene embedding (paper), observed response + cell line, or both")
    exclude_same_gene: bool = Field(True, description="never retrieve the query gene in any cell line (paper: true)")
    nonnegative: bool = Field(True, description="floor predicted expression at 0 (log1p data cannot be negative); "
                              "applies to every generator, so predictions need no clipping afterwards")


class OutputConfig(_Strict):
    dir: str | None = Field(None, description="run folder; empty = a new folder under root")
    root: str = "runs"


class ExperimentConfig(_Strict):
    preset: str | None = None
    budget: str | None = Field(None, description="named training budget from registry.yaml (e.g. demo, paper)")
    seed: Seed = Field(0, description="the run seed: split, sampling, initialisation; 0 to 2**32 - 1")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    data: DataConfig = Field(default_factory=DataConfig)
    retriever: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="none"))
    selector: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="none"))
    generator: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="pert-mean"))
    metrics: list[ComponentChoice] = Field(
        default_factory=lambda: [ComponentChoice(name=n) for n in DEFAULT_METRICS]
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    compare: list[str] = Field(default_factory=list, description="presets also run on the same split and seed")

    @field_validator("retriever", "selector", "generator", mode="before")
    @classmethod
    def _component(cls, raw: Any, info: Any) -> ComponentChoice:
        return ComponentChoice.parse(raw, info.field_name)

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, raw: Any) -> list[ComponentChoice]:
        if raw is None:
            return []
        if isinstance(raw, (str, dict)):
            raw = [raw]
        return [ComponentChoice.parse(item, f"metrics[{i}]") for i, item in enumerate(raw)]

    def to_yaml_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"retriever", "selector", "generator", "metrics"})
        for section in COMPONENT_SECTIONS:
            out[section] = getattr(self, section).to_yaml()
        out["metrics"] = [m.to_yaml() for m in self.metrics]
        return out

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.to_yaml_dict(), sort_keys=False)


# --------------------------------------------------------------------------- resolution


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep merge; a component section whose name changes is replaced, not merged."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key in COMPONENT_SECTIONS:
            new = _as_mapping(value)
            old = _as_mapping(out.get(key))
            out[key] = {**old, **new} if old and new.get("name", old.get("name")) == old.get("name") else new
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _as_mapping(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        return {"name": raw}
    if isinstance(raw, dict):
        body = dict(raw)
        body.update(body.pop("params", {}) or {})
        return body
    return dict(raw)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = load_yaml(read_text(path, ConfigError, "a YAML file"), str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_set(expr: str) -> tuple[list[str], Any]:
    """``train.steps=200`` -> (["train", "steps"], 200); values are parsed as YAML scalars."""
    if "=" not in expr:
        raise ConfigError(f"--set {expr!r}: expected dotted.key=value, e.g. train.steps=200")
    key, _, raw = expr.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {expr!r}: empty key")
    try:
        value = load_yaml(raw, f"--set {key.strip()}") if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def _apply_set(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if part in COMPONENT_SECTIONS and i == 0:
            child = _as_mapping(child)
        elif child is None:
            child = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(parts)}: {'.'.join(parts[: i + 1])} is not a section")
        node[part] = child
        node = child
    node[parts[-1]] = value


def format_validation_error(exc: ValidationError, where: str) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    given = first.get("input")
    shown = "" if isinstance(given, dict) or first["type"] == "missing" else f" (got {given!r})"
    return f"{where}: {loc}: {first['msg']}{shown}{more}"


def _named_by_set(preset: str | None, budget: str | None, sets: list[str] | tuple[str, ...]
                  ) -> tuple[str | None, str | None, list[str]]:
    """``--set preset=NAME`` and ``--set budget=NAME`` choose the preset and budget as ``--preset``
    and ``--budget`` do (and win over them, as --set wins over every flag): set as plain keys
    after the preset was merged, they only relabelled the run as another preset's."""
    rest = []
    for expr in sets:
        parts, value = parse_set(expr)
        if parts in (["preset"], ["budget"]):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"--set {expr!r}: {parts[0]} must be a name (ptrag plugins --presets lists them)")
            preset, budget = (value, budget) if parts == ["preset"] else (preset, value)
        else:
            rest.append(expr)
    return preset, budget, rest


def resolve_config(
    config_path: str | Path | dict[str, Any] | None = None,
    *,
    preset: str | None = None,
    budget: str | None = None,
    components: dict[str, str | None] | None = None,
    sets: list[str] | tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
    manager: Any | None = None,
    registry: Registry | None = None,
) -> ExperimentConfig:
    """Build the experiment config from a preset, a YAML file and overrides, then validate it.

    ``extra`` holds direct overrides (e.g. from ``--steps``/``--seed`` flags) as a nested dict.
    With a ``manager``, component names and parameters are checked against the plugins.
    ``config_path`` may also be the YAML's content as a mapping (the Python API).
    """
    registry = (registry or load_registry()).with_plugin_presets(manager)
    mapping = isinstance(config_path, dict)
    user = copy.deepcopy(config_path) if mapping else read_yaml(config_path) if config_path else {}
    preset, budget, sets = _named_by_set(preset, budget, sets)
    preset_name = preset or user.get("preset") or registry.default_preset
    preset_config = dict(registry.preset(preset_name).config)
    preset_budget = preset_config.pop("budget", None)
    budget_name = budget or user.get("budget") or preset_budget
    raw = _merge({}, preset_config)
    if budget_name:
        raw = _merge(raw, registry.budget(budget_name).config)
    raw = _merge(raw, {k: v for k, v in user.items() if k not in ("preset", "budget")})
    raw["preset"] = preset_name
    raw["budget"] = budget_name
    for section, name in (components or {}).items():
        if name:
            raw = _merge(raw, {section: {"name": name}})
    raw = _merge(raw, extra or {})
    for expr in sets:
        parts, value = parse_set(expr)
        _apply_set(raw, parts, value)
    where = str(config_path) if config_path and not mapping else "config"
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None
    for name in config.compare:  # known presets before anything runs (each runs in <run>/compare/<preset>)
        try:
            registry.preset(name)
        except ConfigError as exc:
            raise ConfigError(f"compare: {exc}") from None
    if manager is not None:
        config = validate_components(config, manager)
    return config


def validate_components(config: ExperimentConfig, manager: Any) -> ExperimentConfig:
    """Check names against the plugins and fill each component's params with its defaults."""
    updates: dict[str, Any] = {}
    for section in COMPONENT_SECTIONS:
        updates[section] = _validated(getattr(config, section), section, manager, section)
    updates["metrics"] = [
        _validated(choice, "metric", manager, f"metrics[{i}]") for i, choice in enumerate(config.metrics)
    ]
    return config.model_copy(update=updates)


def _validated(choice: ComponentChoice, kind: str, manager: Any, where: str) -> ComponentChoice:
    spec = manager.get(kind, choice.name)
    try:
        params = spec.params_model.model_validate(choice.params)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{where} ({choice.name})")) from None
    return ComponentChoice(name=choice.name, params=params.model_dump(mode="json"))


def component_params(choice: ComponentChoice, kind: str, manager: Any) -> BaseModel:
    """The component's validated parameter model instance."""
    return manager.get(kind, choice.name).params_model.model_validate(choice.params)
