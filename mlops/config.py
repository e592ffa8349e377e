"""One typed configuration object, read from YAML and validated once.

Every setting a user may change lives in `configs/*.yaml`; URIs and secrets come from the
environment instead (`MLFLOW_TRACKING_URI`, `OPTUNA_STORAGE`, tokens). `load_config` validates the
YAML into frozen dataclasses with pydantic: an unknown key, a missing key or a value of the wrong
type is a `ConfigError` naming the key and the value. Command-line overrides use the same key
paths: `--set train.torch_mlp.max_epochs=20`.

Defaults: the code's defaults are the defaults; `configs/default.yaml` spells every one of them out
(tests/unit/test_config.py keeps the two equal) so a reader sees each setting with its comment, and
`configs/regression.yaml` sets only what a regression task changes. The search space has no code
default: it lives in the YAML alone.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails

from mlops.errors import ConfigError

Task = Literal["classification", "regression"]
Family = Literal["linear", "random_forest", "torch_mlp"]
ColumnKind = Literal["numeric", "categorical"]
T = TypeVar("T")

# Pydantic's lax mode turns YAML `true` into 1 and "20" into 20; strict scalars refuse both (a float
# still takes an int). Lists still become tuples and strings Paths: those are lax-mode conversions.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
PositiveFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0, lt=1)]
OpenFraction = Annotated[float, Strict(), Field(gt=0, lt=1)]
# Every section rejects keys it does not know; sections are pydantic dataclasses, so a section built
# in code (tests, benchmarks, a trial's params) is validated as the YAML is.
SECTION = ConfigDict(extra="forbid")
# The one place the embedded store is named (the Makefile's STORE is the same folder): MLflow's
# database and artifacts (mlops/tracking.py), and the default Optuna storage.
EMBEDDED_STORE_DIR = Path(".mlflow")
EMBEDDED_OPTUNA_STORAGE = f"sqlite:///{EMBEDDED_STORE_DIR / 'optuna.db'}"
OptunaStorage = Annotated[
    str, BeforeValidator(lambda v: EMBEDDED_OPTUNA_STORAGE if v is None else v)
]


@dataclass(frozen=True, kw_only=True, config=SECTION)
class DataConfig:
    # "sklearn:breast_cancer", "sklearn:diabetes", a .csv / .parquet file, a folder or glob of
    # them, s3://bucket/key-or-prefix, or an http(s):// URL (mlops/sources.py).
    source: str
    target: str
    task: Task
    # Where prepare writes the splits, the profile and the manifest (replaced as a whole).
    prepared_dir: Path
    # Immutable copies of every raw input, named by content digest; never modified.
    raw_dir: Path = Path("data/raw")
    test_fraction: OpenFraction = 0.2
    validation_fraction: OpenFraction = 0.2
    # A column with more missing values than this is rejected (0.3 = 30 %).
    max_missing_fraction: Fraction = 0.3
    min_rows: Int = 50
    # Columns to treat as categorical even if numeric (e.g. codes); others are inferred by dtype.
    categorical_columns: tuple[str, ...] = ()
    # Expected feature columns and their kind; when given, a missing, extra or mistyped column is an
    # error. Empty: the columns are taken from the data (everything but the target).
    columns: dict[str, ColumnKind] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.test_fraction + self.validation_fraction >= 0.9:
            raise ConfigError(
                "data.test_fraction + data.validation_fraction must leave 10 % to train"
            )


@dataclass(frozen=True, kw_only=True, config=SECTION)
class LinearParams:
    # Inverse regularisation strength (LogisticRegression C; Ridge uses alpha = 1 / C).
    C: PositiveFloat = 1.0
    max_iter: PositiveInt = 1000


@dataclass(frozen=True, kw_only=True, config=SECTION)
class ForestParams:
    n_estimators: PositiveInt = 200
    max_depth: PositiveInt | None = None
    min_samples_leaf: PositiveInt = 1
    # Fraction of the features each split considers (1.0: all of them, as bagging).
    max_features: PositiveFloat = 0.5


@dataclass(frozen=True, kw_only=True, config=SECTION)
class MLPParams:
    hidden_units: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (64, 32)
    dropout: Fraction = 0.1
    learning_rate: PositiveFloat = 1e-3
    weight_decay: Float = 1e-4
    batch_size: PositiveInt = 64
    max_epochs: PositiveInt = 200
    # Early stopping: stop after this many epochs without a better validation loss.
    patience: PositiveInt = 15
    # "auto" uses CUDA when present, else the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(frozen=True, kw_only=True, config=SECTION)
class TrainConfig:
    families: tuple[Family, ...] = ("linear", "random_forest", "torch_mlp")
    # Validation metric that picks the run registered as `challenger`.
    selection_metric: str = "roc_auc"
    linear: LinearParams = field(default_factory=LinearParams)
    random_forest: ForestParams = field(default_factory=ForestParams)
    torch_mlp: MLPParams = field(default_factory=MLPParams)


@dataclass(frozen=True, kw_only=True, config=SECTION)
class SearchParam:
    """One searched setting: an int or float range (`log`: sampled on a log scale) or `choices`."""

    type: Literal["int", "float", "categorical"]
    low: Float | None = None
    high: Float | None = None
    log: Bool = False
    # Values Optuna can store (null, true/false, numbers, strings); hidden_units takes widths
    # written as a string, e.g. "64-32".
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True, kw_only=True, config=SECTION)
class TuneConfig:
    families: tuple[Family, ...] = ("linear", "random_forest", "torch_mlp")
    # Finished (complete or pruned) trials per family study, counted over every worker and machine
    # sharing the study. Running the study again continues towards it; never more.
    trials: PositiveInt = 20
    # Session-wide: no trial starts after this many seconds (null: no limit).
    timeout_s: PositiveFloat | None = None
    # Worker processes on this machine (`make tune WORKERS=N`); each fits trials on one thread.
    workers: PositiveInt = 1
    # "tpe" (after `startup_trials` random ones) or "random". The median pruner also waits for
    # `startup_trials` finished trials before pruning anything.
    sampler: Literal["tpe", "random"] = "tpe"
    startup_trials: Int = 5
    # Stops poor PyTorch trials early from the validation metric reported each epoch: "median"
    # (worse than the median of earlier trials at that epoch), "hyperband", or "none".
    pruner: Literal["median", "hyperband", "none"] = "median"
    pruner_warmup_epochs: Int = 5
    # Optuna RDB URL; null: a SQLite file in the embedded store. OPTUNA_STORAGE overrides it
    # (PostgreSQL for several machines).
    storage: OptunaStorage = EMBEDDED_OPTUNA_STORAGE
    # Study name: <prefix>-<experiment>-<family>-<data digest[:8]>-<objective digest[:8]>.
    study_prefix: str = "mlops"
    # A worker silent (killed) for grace_period_s has its trial failed, then retried (max_retries).
    heartbeat_interval_s: PositiveInt = 5
    grace_period_s: Int = 20
    max_retries: Int = 3
    # family -> TrainConfig field -> range; fields not listed keep their `train` value.
    search_space: dict[str, dict[str, SearchParam]]

    def __post_init__(self) -> None:
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
    for value in _search_bounds(param, key):
        try:
            _validate(params_class, {name: search_value(name, value)})
        except ConfigError as err:
            raise ConfigError(f"{key}: value {value!r} is not valid: {err}") from None


def _search_bounds(param: SearchParam, key: str) -> list[Any]:
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


@dataclass(frozen=True, kw_only=True, config=SECTION)
class PromoteConfig:
    # Test-set bounds every challenger must meet: at least this for higher-is-better metrics, at
    # most this for lower-is-better ones (log_loss, rmse, mae).
    thresholds: dict[str, Float] = field(
        default_factory=lambda: {"roc_auc": 0.95, "accuracy": 0.90}
    )
    # Against a champion: beat it on `metric` by min_improvement (absolute) and by
    # min_relative_improvement (a fraction of the champion's value, 0.01 = 1 %), in the metric's
    # direction. Negative values tolerate a small regression. No champion: thresholds alone.
    metric: str = "roc_auc"
    min_improvement: Float = 0.001
    min_relative_improvement: Float = 0.0
    # Latency gate: p95 of `latency_repeats` pyfunc predictions of a latency_batch_rows batch.
    latency_batch_rows: PositiveInt = 100
    latency_repeats: PositiveInt = 50
    max_latency_p95_ms: PositiveFloat = 50.0


@dataclass(frozen=True, kw_only=True, config=SECTION)
class ServeConfig:
    # The model server (docs/serving.md). HOST, PORT and MODEL_URI in the environment
    # (or --host, --port, --model-uri) override host, port and models:/<registered_model>@alias.
    host: str = "127.0.0.1"
    port: Annotated[int, Strict(), Field(gt=0, lt=65536)] = 8080
    # Liveness, readiness and /metrics also answer here, from a thread never queued behind
    # predictions (probes.py); PROBE_PORT overrides it, 0 turns it off.
    probe_port: Annotated[int, Strict(), Field(ge=0, lt=65536)] = 8082
    # The Open Inference Protocol's gRPC service, beside HTTP on the same model, batcher and
    # limits (grpc_service.py); GRPC_PORT overrides it, 0 turns it off.
    grpc_port: Annotated[int, Strict(), Field(ge=0, lt=65536)] = 8081
    model_alias: str = "champion"
    # Processes. One suits a 2-core pod: the event loop takes one core, predict threads the other
    # (numpy, sklearn trees and torch release the GIL); each extra worker is another model copy.
    workers: PositiveInt = 1
    # Concurrent predict calls (batches) per worker, and torch's intra-op threads per call.
    predict_threads: PositiveInt = 1
    model_threads: PositiveInt = 1
    # Requests: larger bodies get 413, more rows 400, slower requests 504.
    max_body_bytes: PositiveInt = 1_048_576
    max_rows: PositiveInt = 10_000
    request_timeout_s: PositiveFloat = 5.0
    # Batching: rows per predict call; how long a batch may wait for requests being decoded
    # (a lone request never waits).
    max_batch_rows: PositiveInt = 512
    max_batch_wait_ms: NonNegativeFloat = 2.0
    # Admission, per worker: a prediction request arriving while this many requests are in the
    # server, or while the rows in it would take the model more than half of request_timeout_s
    # to predict at its recent speed, gets 503 at once, before its body is read.
    max_queue_depth: PositiveInt = 2048
    # Hot reload: how often the alias is checked (0 = never); start-up retry backoff.
    reload_interval_s: NonNegativeFloat = 30.0
    load_retry_initial_s: PositiveFloat = 1.0
    load_retry_max_s: PositiveFloat = 30.0
    # Rows predicted at warm-up (after the input example), before the model counts as ready.
    warmup_rows: PositiveInt = 64
    # SIGTERM: readiness fails at once, requests are still served for drain_s (each answer
    # closing its connection) while endpoints stop routing here; then the listener closes and
    # in-flight requests get drain_timeout_s to finish. Idle keep-alive connections close after
    # keep_alive_s.
    drain_s: NonNegativeFloat = 10.0
    drain_timeout_s: NonNegativeFloat = 20.0
    keep_alive_s: PositiveFloat = 5.0
    # Slow clients: a request's headers must arrive within header_timeout_s; past
    # max_connections open connections per worker, the oldest one still sending headers is closed.
    header_timeout_s: PositiveFloat = 10.0
    max_connections: PositiveInt = 2048
    # Histogram buckets of mlops_prediction_value (regressors); match them to the target's scale.
    prediction_buckets: tuple[Float, ...] = (
        0.0,
        1.0,
        2.5,
        5.0,
        10.0,
        25.0,
        50.0,
        100.0,
        250.0,
        500.0,
        1000.0,
    )
    # Drift gauges compare the last this-many predicted rows with the training bins (0 = off).
    drift_window_rows: NonNegativeInt = 10_000
    # Canary (the `canary` alias): taken out of rotation when its share of 5xx answers over its
    # last canary_window_requests exceeds the champion's by more than canary_max_error_excess.
    canary_window_requests: PositiveInt = 200
    canary_max_error_excess: Fraction = 0.05

    def __post_init__(self) -> None:
        if list(self.prediction_buckets) != sorted(self.prediction_buckets):
            raise ConfigError("serve.prediction_buckets must be in increasing order")


@dataclass(frozen=True, kw_only=True, config=SECTION)
class ScoreConfig:
    # Batch scoring (make score; docs/batch-scoring.md). MODEL_URI (or --model-uri) overrides
    # models:/<registered_model>@model_alias.
    model_alias: str = "champion"
    # Rows read, validated and predicted at a time: memory grows with this, not with the input.
    batch_rows: PositiveInt = 65_536
    # Without a terminal (a Job's log): one progress line every this many batches.
    log_every_batches: PositiveInt = 20


@dataclass(frozen=True, kw_only=True, config=SECTION)
class Config:
    experiment: str
    registered_model: str
    seed: Int
    data: DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)


def load_config(path: Path, overrides: typing.Sequence[str] = ()) -> Config:
    raw = _read_yaml(path)
    for override in overrides:
        _apply_override(raw, override)
    return _validate(Config, raw)


def as_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain YAML-safe data (logged with every run)."""
    plain: dict[str, Any] = TypeAdapter(Config).dump_python(config, mode="json")
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


def _validate(cls: type[T], raw: dict[str, Any]) -> T:
    """`raw` as a `cls`, or its first problem as one line naming the key (pydantic's `loc`)."""
    try:
        return TypeAdapter(cls).validate_python(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err.errors()[0])) from None


def _describe(error: ErrorDetails) -> str:
    key = _key(error["loc"])
    if error["type"] == "unexpected_keyword_argument":
        return f"unknown config key {key!r}"
    if error["type"] in ("missing", "missing_argument", "missing_keyword_only_argument"):
        return f"missing config key {key!r}"
    message = error["msg"]
    expected = message.removeprefix("Input should be ")
    problem = f"must be {expected}" if expected != message else f"is invalid ({message})"
    return f"{key} {problem}, got {error['input']!r}"


def _key(loc: tuple[int | str, ...]) -> str:
    """("train", "families", 1) -> "train.families[1]"."""
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return key.removeprefix(".") or "config"
