"""One typed configuration object, read from YAML and validated once.

Every setting a user may change lives in `configs/*.yaml`; URIs and secrets come from the
environment instead (`MLFLOW_TRACKING_URI`, `OPTUNA_STORAGE`, tokens). `load_config` turns the YAML
into frozen dataclasses: an unknown key, a missing key or a value of the wrong type is a
`ConfigError` naming the key and the value. Command-line overrides use the same key paths:
`--set train.torch_mlp.max_epochs=20`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mlops.errors import ConfigError

Task = Literal["classification", "regression"]
Family = Literal["linear", "random_forest", "torch_mlp"]
ColumnKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class DataConfig:
    # "sklearn:breast_cancer", "sklearn:diabetes", or a path to a .csv / .parquet file.
    source: str
    target: str
    task: Task
    # Where prepare writes the splits, the profile and the manifest (replaced as a whole).
    prepared_dir: Path
    # Immutable copies of every raw input, named by content digest; never modified.
    raw_dir: Path = Path("data/raw")
    test_fraction: float = 0.2
    validation_fraction: float = 0.2
    # A column with more missing values than this is rejected (0.3 = 30 %).
    max_missing_fraction: float = 0.3
    min_rows: int = 50
    # Columns to treat as categorical even if numeric (e.g. codes); others are inferred by dtype.
    categorical_columns: tuple[str, ...] = ()
    # Expected feature columns and their kind; when given, a missing, extra or mistyped column is an
    # error. Empty: the columns are taken from the data (everything but the target).
    columns: dict[str, ColumnKind] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("test_fraction", "validation_fraction"):
            value = getattr(self, key)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"data.{key} must be between 0 and 1, got {value}")
        if self.test_fraction + self.validation_fraction >= 0.9:
            raise ConfigError(
                "data.test_fraction + data.validation_fraction must leave 10 % to train"
            )
        if not 0.0 <= self.max_missing_fraction < 1.0:
            raise ConfigError(
                f"data.max_missing_fraction must be in [0, 1), got {self.max_missing_fraction}"
            )


@dataclass(frozen=True)
class LinearParams:
    # Inverse regularisation strength (LogisticRegression C; Ridge uses alpha = 1 / C).
    C: float = 1.0
    max_iter: int = 1000


@dataclass(frozen=True)
class ForestParams:
    n_estimators: int = 200
    max_depth: int | None = None
    min_samples_leaf: int = 1
    max_features: float = 1.0


@dataclass(frozen=True)
class MLPParams:
    hidden_units: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 200
    # Early stopping: stop after this many epochs without a better validation loss.
    patience: int = 15
    # "auto" uses CUDA when present, else the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(frozen=True)
class TrainConfig:
    families: tuple[Family, ...] = ("linear", "random_forest", "torch_mlp")
    # Validation metric that picks the run registered as `challenger`.
    selection_metric: str = "roc_auc"
    linear: LinearParams = field(default_factory=LinearParams)
    random_forest: ForestParams = field(default_factory=ForestParams)
    torch_mlp: MLPParams = field(default_factory=MLPParams)


@dataclass(frozen=True)
class SearchParam:
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TuneConfig:
    families: tuple[Family, ...] = ("linear", "random_forest", "torch_mlp")
    trials: int = 20
    timeout_s: float | None = None
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    # Embedded default storage; OPTUNA_STORAGE overrides it (PostgreSQL for several machines).
    storage: str = "sqlite:///.mlflow/optuna.db"
    study_prefix: str = "mlops"
    search_space: dict[str, dict[str, SearchParam]] = field(default_factory=dict)


@dataclass(frozen=True)
class PromoteConfig:
    # Absolute minimums (or maximums for lower-is-better metrics) on test metrics.
    min_metrics: dict[str, float] = field(default_factory=dict)
    # Required improvement over the champion on `metric`: absolute and relative (0.01 = 1 %).
    metric: str = "roc_auc"
    min_improvement: float = 0.0
    min_relative_improvement: float = 0.0
    latency_batch_rows: int = 100
    max_latency_p95_ms: float = 50.0


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # models:/<name>@champion by default; MODEL_URI in the environment overrides it.
    model_alias: str = "champion"
    workers: int = 1
    max_body_bytes: int = 1_048_576
    max_rows: int = 10_000
    request_timeout_s: float = 5.0
    max_batch_rows: int = 256
    max_batch_wait_ms: float = 2.0
    max_queue_depth: int = 512
    reload_interval_s: float = 30.0
    drain_timeout_s: float = 20.0


@dataclass(frozen=True)
class Config:
    experiment: str
    registered_model: str
    seed: int
    data: DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)


def load_config(path: Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Read `path`, apply `key.path=value` overrides, and return the validated config."""
    raw = _read_yaml(path)
    for override in overrides:
        _apply_override(raw, override)
    config: Config = _build(Config, raw, "")
    return config


def as_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain YAML-safe data (logged with every run)."""
    plain: dict[str, Any] = _plain(dataclasses.asdict(config))
    return plain


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return raw


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like key.path=value")
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    try:
        node[leaf] = yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"override {override!r}: value is not valid YAML") from None


def _build(cls: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config key {_join(where, unknown[0])!r}")
    values = {name: _convert(hints[name], raw[name], _join(where, name)) for name in raw}
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing config key {_join(where, missing[0])!r}")
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type[Any], hint), value, key)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(args, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        items = _expect(list, value, key, "a list")
        item_hint = args[0]
        return tuple(_convert(item_hint, v, f"{key}[{i}]") for i, v in enumerate(items))
    if origin is dict:
        mapping = _expect(dict, value, key, "a mapping")
        return {str(k): _convert(args[1], v, _join(key, str(k))) for k, v in mapping.items()}
    return _convert_scalar(hint, value, key)


def _convert_union(args: tuple[Any, ...], value: Any, key: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return _convert(arg, value, key)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0])


def _convert_scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is Path:
        return Path(_expect(str, value, key, "a path"))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool:
        return _expect(bool, value, key, "true or false")
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    return _expect(hint, value, key, f"of type {getattr(hint, '__name__', hint)}")


def _expect(kind: type[Any], value: Any, key: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(f"{key} must be {what}, got {value!r}")
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
