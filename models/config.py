"""The typed training configuration: dataclasses, loaded from YAML, with ``key.sub=value`` overrides.

Every section is a dataclass with defaults, so a config file names only what it changes. Values
are checked against the declared field types when the file is read and when an override is
applied; an unknown key or a value of the wrong type fails at once with a :class:`ConfigError`
that names the full key path (``optim.lr``), instead of surfacing mid-run. An override's value
is read as YAML (``optim.lr=3e-4``, ``data.mean=[0.5,0.5,0.5]``, ``train.max_steps=null``) and
then checked like a file value. The trade-off against pydantic: no extra dependency and a small
checker that knows exactly the types used here (bool, int, float, str, Literal, lists of them,
``| None``, nested sections) and nothing else.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration key that does not exist or a value of the wrong type (names the key)."""


@dataclass
class ModelConfig:
    """The ResNet for small images (``depth`` = 6n + 2)."""

    depth: int = 20
    width: int = 16
    num_classes: int = 10
    in_channels: int = 3


@dataclass
class DataConfig:
    """Where the samples come from and how they become model input.

    ``mean``/``std`` normalise the input field per channel on the loader's device (uint8 images
    are scaled to [0, 1] first); for cached float latents use ``mean=[0.0]``, ``std=[1.0]``.
    """

    path: str = ""
    input_field: str = "image"
    label_field: str = "label"
    val_fraction: float = 0.1
    split_seed: int = 0
    batch_size: int = 128
    num_threads: int | None = None
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.25])
    augment: bool = False


@dataclass
class OptimConfig:
    """The optimiser and gradient clipping (``grad_clip``: max global L2 norm, null = off)."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    grad_clip: float | None = 1.0


@dataclass
class ScheduleConfig:
    """The learning-rate schedule over the whole run, with a linear warm-up.

    ``onecycle`` is torch's OneCycleLR (warm-up to ``optim.lr``, then cosine annealing);
    ``cosine`` warms up linearly and then follows a cosine down to ``final_lr_fraction * lr``;
    ``constant`` warms up and then holds ``lr``.
    """

    name: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup_fraction: float = 0.1
    final_lr_fraction: float = 0.01


@dataclass
class TrainConfig:
    """The run: length, precision, logging, checkpoints, early stopping, resume.

    ``checkpoint_every`` is in steps (0: only at epoch ends and at ``max_steps``); ``progress``
    None shows progress bars on a terminal; ``plot`` draws ``curves.png`` at the end.
    """

    epochs: int = 10
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    log_every: int = 20
    checkpoint_every: int = 0
    early_stopping_patience: int | None = None
    early_stopping_metric: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    out_dir: str = "runs/train"
    resume: bool = False
    progress: bool | None = None
    plot: bool = True


@dataclass
class Config:
    """A whole training configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return " or ".join(repr(v) for v in typing.get_args(kind))
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is list:
        return f"a list of {_type_name(typing.get_args(kind)[0])}"
    return "null" if kind is type(None) else getattr(kind, "__name__", str(kind))


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """``value`` checked against the declared type ``kind`` (ints are accepted as floats)."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return _section(kind, value, key)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
    elif origin is Literal:
        if value in typing.get_args(kind) and isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list):
            return [_coerce(v, typing.get_args(kind)[0], f"{key}[{i}]") for i, v in enumerate(value)]
    elif kind is type(None):
        if value is None:
            return None
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads exponents without a dot (1e-3) as strings
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    msg = f"config key '{key}' must be {_type_name(kind)}, got {type(value).__name__} {value!r}"
    raise ConfigError(msg)


def _section(cls: Any, values: Any, key: str) -> Any:
    """A dataclass ``cls`` built from a mapping, every key known and every value checked."""
    if not isinstance(values, dict):
        msg = f"config key '{key}' must be a mapping of {sorted(f.name for f in dataclasses.fields(cls))}, got {values!r}"
        raise ConfigError(msg)
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        where = f"'{key}.{unknown[0]}'" if key else f"'{unknown[0]}'"
        msg = f"unknown config key {where}; {f'{key!r}' if key else 'the top level'} has {sorted(hints)}"
        raise ConfigError(msg)
    kwargs = {name: _coerce(value, hints[name], f"{key}.{name}" if key else name)
              for name, value in values.items()}
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> Config:
    """A :class:`Config` from nested dicts (as YAML gives); missing keys keep their defaults.

    Raises:
        ConfigError: An unknown key or a value of the wrong type (names the key path).
    """
    config: Config = _section(Config, values, "")
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as nested plain dicts (for YAML, JSON and checkpoints)."""
    return dataclasses.asdict(config)


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """A copy of ``config`` with ``key.sub=value`` overrides applied (values read as YAML).

    Raises:
        ConfigError: A malformed override, an unknown key or a value of the wrong type.

    Example:
        >>> apply_overrides(Config(), ["optim.lr=0.01", "train.amp=bf16"]).optim.lr
        0.01
    """
    values = config_to_dict(config)
    for override in overrides:
        path, sep, text = override.partition("=")
        keys = path.strip().split(".")
        if not sep or not all(keys):
            msg = f"config override must look like section.key=value, got {override!r}"
            raise ConfigError(msg)
        node = values
        for depth, name in enumerate(keys[:-1]):
            child = node.get(name)
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                msg = f"unknown config section '{where}' in override {override!r}"
                raise ConfigError(msg)
            node = child
        if keys[-1] not in node:
            where = f"'{'.'.join(keys[:-1])}'" if len(keys) > 1 else "the top level"
            msg = f"unknown config key '{path.strip()}'; {where} has {sorted(node)}"
            raise ConfigError(msg)
        node[keys[-1]] = _parse_value(text, node[keys[-1]])
    return config_from_dict(values)


def _parse_value(text: str, current: Any) -> Any:
    """An override's text as YAML; a string field keeps the text as written (``data.path=010``)."""
    if isinstance(current, str):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # reported by the type check, with the key


def load_config(path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()) -> Config:
    """Reads a YAML config file (``None``: the defaults) and applies ``overrides``.

    Raises:
        FileNotFoundError: No file at ``path``.
        ConfigError: Unparsable YAML, an unknown key or a wrong type (names the file and key).
    """
    values: Any = {}
    if path is not None:
        text = Path(path).read_text()
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            msg = f"{path}: not valid YAML: {' '.join(str(exc).split())}"
            raise ConfigError(msg) from None
    try:
        return apply_overrides(config_from_dict(values), list(overrides))
    except ConfigError as exc:
        msg = f"{path}: {exc}" if path is not None else str(exc)
        raise ConfigError(msg) from None
