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


def _require_positive(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{type(section).__name__}.{name} must be positive, got {value}")


@dataclass(frozen=True)
class LinearParams:
    # Inverse regularisation strength (LogisticRegression C; Ridge uses alpha = 1 / C).
    C: float = 1.0
    max_iter: int = 1000

    def __post_init__(self) -> None:
        _require_positive(self, "C", "max_iter")


@dataclass(frozen=True)
class ForestParams:
    n_estimators: int = 200
    max_depth: int | None = None
    min_samples_leaf: int = 1
    max_features: float = 1.0

    def __post_init__(self) -> None:
        _require_positive(self, "n_estimators", "max_depth", "min_samples_leaf", "max_features")


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

    def __post_init__(self) -> None:
        _require_positive(self, "learning_rate", "batch_size", "max_epochs", "patience")
        if not self.hidden_units or min(self.hidden_units) <= 0:
            raise ConfigError(
                f"MLPParams.hidden_units must be positive widths, got {self.hidden_units}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"MLPParams.dropout must be in [0, 1), got {self.dropout}")


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
    """One searched setting: an int or float range (`log`: sampled on a log scale) or `choices`."""

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    # Values Optuna can store (null, true/false, numbers, strings); hidden_units takes widths
    # written as a string, e.g. "64-32".
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TuneConfig:
    families: tuple[Family, ...] = ("linear", "random_forest", "torch_mlp")
    # Finished (complete or pruned) trials per family study, counted over every worker and machine
    # sharing the study. Running the study again continues towards it; never more.
    trials: int = 20
    # Session-wide: no trial starts after this many seconds (null: no limit).
    timeout_s: float | None = None
    # Worker processes on this machine (`make tune WORKERS=N`); each fits trials on one thread.
    workers: int = 1
    # "tpe" (after `startup_trials` random ones) or "random". The median pruner also waits for
    # `startup_trials` finished trials before pruning anything.
    sampler: Literal["tpe", "random"] = "tpe"
    startup_trials: int = 5
    # Stops poor PyTorch trials early from the validation metric reported each epoch: "median"
    # (worse than the median of earlier trials at that epoch), "hyperband", or "none".
    pruner: Literal["median", "hyperband", "none"] = "median"
    pruner_warmup_epochs: int = 5
    # Embedded default storage; OPTUNA_STORAGE overrides it (PostgreSQL for several machines).
    storage: str = "sqlite:///.mlflow/optuna.db"
    # Study name: <prefix>-<experiment>-<family>-<data digest[:8]>-<objective digest[:8]>.
    study_prefix: str = "mlops"
    # A worker silent (killed) for grace_period_s has its trial failed, then retried (max_retries).
    heartbeat_interval_s: int = 5
    grace_period_s: int = 20
    max_retries: int = 3
    # family -> TrainConfig field -> range; fields not listed keep their `train` value.
    search_space: dict[str, dict[str, SearchParam]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_positive(self, "trials", "timeout_s", "workers", "heartbeat_interval_s")
        if self.grace_period_s <= self.heartbeat_interval_s:
            raise ConfigError(
                f"tune.grace_period_s ({self.grace_period_s}) must exceed "
                f"tune.heartbeat_interval_s ({self.heartbeat_interval_s})"
            )
        for family, space in self.search_space.items():
            for name, param in space.items():
                _check_search_param(family, name, param)


def _check_search_param(family: str, name: str, param: SearchParam) -> None:
    key = f"tune.search_space.{family}.{name}"
    params_class = typing.get_type_hints(TrainConfig).get(family)
    if not isinstance(params_class, type) or not dataclasses.is_dataclass(params_class):
        raise ConfigError(f"tune.search_space.{family}: not a model family")
    if name not in {f.name for f in dataclasses.fields(params_class)}:
        raise ConfigError(f"{key}: {params_class.__name__} has no field {name!r}")
    hint = typing.get_type_hints(params_class)[name]
    for value in _search_bounds(param, key):
        try:
            decoded = search_value(name, value)
            plain = list(decoded) if isinstance(decoded, tuple) else decoded
            params_class(**{name: _convert(hint, plain, key)})
        except ConfigError as err:
            raise ConfigError(f"{key}: value {value!r} is not valid: {err}") from None


def _search_bounds(param: SearchParam, key: str) -> list[Any]:
    """The extreme values of a searched setting: its choices, or the ends of its range."""
    if param.type == "categorical":
        if not param.choices or param.low is not None or param.high is not None:
            raise ConfigError(f"{key}: a categorical needs `choices` (and no low/high)")
        return list(param.choices)
    low, high = param.low, param.high
    if low is None or high is None or not low < high or param.choices:
        raise ConfigError(f"{key}: an {param.type} range needs low < high, got {low}, {high}")
    if param.log and low <= 0:
        raise ConfigError(f"{key}: a log-scale range needs low > 0, got {low}")
    if param.type == "int":
        if not (low.is_integer() and high.is_integer()):
            raise ConfigError(f"{key}: an int range needs whole bounds, got {low}, {high}")
        return [int(low), int(high)]
    return [low, high]


def search_value(name: str, value: Any) -> Any:
    """A searched value as the params dataclass takes it ("64-32" -> (64, 32) for hidden_units)."""
    if name != "hidden_units":
        return value
    try:
        return tuple(int(width) for width in str(value).split("-"))
    except ValueError:
        raise ConfigError(f"hidden_units {value!r} must be widths like '64-32'") from None


@dataclass(frozen=True)
class PromoteConfig:
    # Test-set bounds every challenger must meet: at least this for higher-is-better metrics, at
    # most this for lower-is-better ones (log_loss, rmse, mae).
    thresholds: dict[str, float] = field(default_factory=dict)
    # Against a champion: beat it on `metric` by min_improvement (absolute) and by
    # min_relative_improvement (a fraction of the champion's value, 0.01 = 1 %), in the metric's
    # direction. Negative values tolerate a small regression. No champion: thresholds alone.
    metric: str = "roc_auc"
    min_improvement: float = 0.0
    min_relative_improvement: float = 0.0
    # Latency gate: p95 of `latency_repeats` pyfunc predictions of a latency_batch_rows batch.
    latency_batch_rows: int = 100
    latency_repeats: int = 50
    max_latency_p95_ms: float = 50.0

    def __post_init__(self) -> None:
        _require_positive(self, "latency_batch_rows", "latency_repeats", "max_latency_p95_ms")


@dataclass(frozen=True)
class ServeConfig:
    # The model server (docs/serving.md). HOST, PORT and MODEL_URI in the environment
    # (or --host, --port, --model-uri) override host, port and models:/<registered_model>@alias.
    host: str = "127.0.0.1"
    port: int = 8080
    model_alias: str = "champion"
    # Processes. One suits a 2-core pod: the event loop takes one core, predict threads the other
    # (numpy, sklearn trees and torch release the GIL); each extra worker is another model copy.
    workers: int = 1
    # Concurrent predict calls (batches) per worker, and torch's intra-op threads per call.
    predict_threads: int = 1
    model_threads: int = 1
    # Requests: larger bodies get 413, more rows 400, slower requests 504.
    max_body_bytes: int = 1_048_576
    max_rows: int = 10_000
    request_timeout_s: float = 5.0
    # Batching: rows per predict call; how long a batch may wait for requests being decoded
    # (a lone request never waits); queued requests per worker beyond which new ones get 503.
    max_batch_rows: int = 512
    max_batch_wait_ms: float = 2.0
    max_queue_depth: int = 512
    # Hot reload: how often the alias is checked (0 = never); start-up retry backoff.
    reload_interval_s: float = 30.0
    load_retry_initial_s: float = 1.0
    load_retry_max_s: float = 30.0
    # Rows predicted at warm-up (after the input example), before the model counts as ready.
    warmup_rows: int = 64
    # SIGTERM: in-flight requests get this long to finish. Idle keep-alive connections close
    # after keep_alive_s.
    drain_timeout_s: float = 20.0
    keep_alive_s: float = 5.0
    # Histogram buckets of mlops_prediction_value (regressors); match them to the target's scale.
    prediction_buckets: tuple[float, ...] = (0.0, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000)
    # Drift gauges compare the last this-many predicted rows with the training bins (0 = off).
    drift_window_rows: int = 10_000


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
