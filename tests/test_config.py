import pytest
import yaml

from ptrag.core.components.manager import build_manager
from ptrag.core.config import ExperimentConfig, parse_set, resolve_config
from ptrag.core.errors import ConfigError, UnknownComponentError
from ptrag.core.hookspecs import ComponentParams, GeneratorSpec, hookimpl


class ScaledParams(ComponentParams):
    scale: float = 1.0
    layers: int = 2


class _ScaledPlugin:
    @hookimpl
    def ptrag_generators(self):
        return [GeneratorSpec("scaled", lambda p, c: None, ScaledParams, "test generator with params")]


@pytest.fixture
def manager():
    return build_manager(entry_points=False, extra_plugins=[("scaled", _ScaledPlugin())])


def test_yaml_preset_and_overrides_resolve_in_order(tmp_path, manager):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "preset": "control",
        "seed": 3,
        "generator": {"name": "scaled", "scale": 2.0},
        "train": {"steps": 50, "lr": 0.01},
    }))
    cfg = resolve_config(path, components={"retriever": "none"}, manager=manager,
                         sets=["train.steps=200", "generator.layers=4", "data.synth_preset=tiny"],
                         extra={"seed": 7})
    assert cfg.preset == "control"
    assert cfg.seed == 7  # flag beats YAML
    assert cfg.train.steps == 200 and cfg.train.lr == 0.01  # --set beats YAML, YAML keeps the rest
    assert cfg.generator.name == "scaled"
    assert cfg.generator.params == {"scale": 2.0, "layers": 4}  # validated and defaults filled
    assert cfg.data.synth_preset == "tiny"
    assert cfg.selector.name == "none"  # from the preset


def test_preset_flag_beats_yaml_preset_and_yaml_beats_preset(tmp_path, manager):
    path = tmp_path / "exp.yaml"
    path.write_text("preset: control\ngenerator: pert-mean\n")
    cfg = resolve_config(path, preset="control", manager=manager)
    assert cfg.generator.name == "pert-mean"
    assert resolve_config(None, preset="control", manager=manager).generator.name == "control"


def test_unknown_keys_are_rejected(tmp_path, manager):
    path = tmp_path / "exp.yaml"
    path.write_text("trian: {steps: 3}\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: trian: Extra inputs are not permitted"):
        resolve_config(path, manager=manager)
    with pytest.raises(ConfigError, match=r"generator \(scaled\): depth: Extra inputs are not permitted"):
        resolve_config(None, components={"generator": "scaled"}, sets=["generator.depth=3"], manager=manager)
    with pytest.raises(ConfigError, match=r"train.steps: Input should be a valid integer"):
        resolve_config(None, sets=["train.steps=many"], manager=manager)


def test_unknown_component_and_preset(manager):
    with pytest.raises(UnknownComponentError,
                       match=r"^unknown retriever 'nosuch'; available retrievers: exact, faiss, hnsw, none, random$"):
        resolve_config(None, components={"retriever": "nosuch"}, manager=manager)
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'; available presets: .*pert-mean"):
        resolve_config(None, preset="nope", manager=manager)


def test_parse_set():
    assert parse_set("train.steps=200") == (["train", "steps"], 200)
    assert parse_set("data.path=a=b.h5ad") == (["data", "path"], "a=b.h5ad")
    assert parse_set("metrics=[mse]") == (["metrics"], ["mse"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_set("train.steps")


def test_config_yaml_round_trip(manager):
    cfg = resolve_config(None, components={"generator": "scaled"}, sets=["generator.scale=3"], manager=manager)
    again = ExperimentConfig.model_validate(yaml.safe_load(cfg.dump_yaml()))
    assert again == cfg


def test_bad_yaml_is_one_line(tmp_path, manager):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        resolve_config(path, manager=manager)
    with pytest.raises(ConfigError, match=r"missing.yaml: config file not found"):
        resolve_config(tmp_path / "missing.yaml", manager=manager)
