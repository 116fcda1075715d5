"""The typed config: YAML files and ``key.sub=value`` overrides, checked against the declared
types; unknown keys and wrong types fail with a message that names the full key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydata.models.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)


def test_defaults_round_trip_through_a_dict() -> None:
    config = Config()
    assert config_from_dict(config_to_dict(config)) == config


def test_a_yaml_file_sets_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: {depth: 14}\ndata:\n  path: /data/train\n  mean: [0.4, 0.5, 0.6]\n"
                    "optim: {name: sgd, lr: 1e-3}\ntrain: {amp: bf16, max_steps: 7}\n")
    config = load_config(path)
    assert (config.model.depth, config.model.width) == (14, Config().model.width)
    assert config.data.path == "/data/train" and config.data.mean == [0.4, 0.5, 0.6]
    assert (config.optim.name, config.optim.lr) == ("sgd", 1e-3)  # YAML 1.1 reads 1e-3 as a string
    assert (config.train.amp, config.train.max_steps) == ("bf16", 7)


def test_overrides_are_parsed_by_the_fields_type(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train: {max_steps: 7}\n")
    config = load_config(path, ["optim.lr=0.05", "train.epochs=3", "train.max_steps=null",
                                "data.std=[1, 2]", "data.path=0123", "train.resume=true",
                                "optim.grad_clip=~", "schedule.name=cosine"])
    assert config.optim.lr == 0.05 and isinstance(config.optim.lr, float)
    assert config.train.epochs == 3 and config.train.max_steps is None
    assert config.data.std == [1.0, 2.0] and all(isinstance(v, float) for v in config.data.std)
    assert config.data.path == "0123"  # a string field keeps the text as written
    assert config.train.resume is True and config.optim.grad_clip is None
    assert config.schedule.name == "cosine"
    assert apply_overrides(config, []) == config


@pytest.mark.parametrize(("override", "needle"), [
    ("optim.lr=fast", "config key 'optim.lr' must be float, got str 'fast'"),
    ("train.epochs=2.5", "config key 'train.epochs' must be int, got float 2.5"),
    ("train.epochs=true", "config key 'train.epochs' must be int, got bool True"),
    ("train.amp=fp8", "config key 'train.amp' must be 'auto' or 'off' or 'bf16' or 'fp16'"),
    ("train.resume=maybe", "config key 'train.resume' must be bool"),
    ("data.mean=[0.5, x]", "config key 'data.mean[1]' must be float"),
    ("data.mean=0.5", "config key 'data.mean' must be a list of float"),
    ("train.max_steps=many", "config key 'train.max_steps' must be int or null"),
    ("optim.learning_rate=0.1", "unknown config key 'optim.learning_rate'; 'optim' has ["),
    ("optimizer.lr=0.1", "unknown config section 'optimizer'"),
    ("model.depth.x=1", "unknown config section 'model.depth'"),
    ("epochs=3", "unknown config key 'epochs'; the top level has ['data', 'model', 'optim'"),
    ("train=3", "config key 'train' must be a mapping"),
    ("optim.lr", "config override must look like section.key=value"),
    ("=3", "config override must look like section.key=value"),
])
def test_bad_overrides_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), [override])
    assert needle in str(info.value)


def test_bad_files_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 0.1\n  nesterov: true\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown config key 'optim\.nesterov'"):
        load_config(path)
    path.write_text("model: {depth: twenty}\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: config key 'model\.depth' must be int, got str"):
        load_config(path)
    path.write_text("model: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"config key 'model' must be a mapping of \['depth'"):
        load_config(path)
    path.write_text("model: {depth: [unclosed\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: not valid YAML"):
        load_config(path)
    path.write_text("data: {}\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: config key 'train\.epochs' must be int"):
        load_config(path, ["train.epochs=[1]"])
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == Config()
    assert load_config(None, ["model.width=8"]).model.width == 8
