"""The promote step: gate the challenger against the champion on the test split, move the aliases.

python scripts/promote.py --config configs/default.yaml [--version N] [--ignore-champion]
python scripts/promote.py --config configs/default.yaml --rollback

Both models are loaded from the registry and scored on the test split prepared now, once the data
gates pass (mlops/gates.py). Every decision is recorded as an MLflow run and as `promotion.*` tags
on the judged version; a pass points `previous` at the old champion, then moves `champion`; a
failure moves nothing (docs/tuning.md, "Promotion"). Promoting the `canary` version graduates it:
its alias and tags go (docs/serving.md, "Canary").
"""

from __future__ import annotations

import dataclasses
import json
import logging
import timeit
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import mlflow
import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops.config import Config, PromoteConfig
from mlops.data import PreparedData, frame_digest, load_prepared
from mlops.errors import RegistryError
from mlops.evaluate import check_metric, evaluate
from mlops.gates import Gate, Verdict, metric_gates, same_data, same_split
from mlops.models.torch_mlp import torch_thread_limit
from mlops.registry import CANARY, CHALLENGER, CHAMPION, PREVIOUS, alias_version, stop_canary
from mlops.sources import first_line
from mlops.tracking import configure_tracking, owned_run, use_experiment

log = logging.getLogger(__name__)

# Logged as the promote run's params and as the judged version's `promotion.*` tags.
PARAMS = ("challenger", "champion", "data_digest", "split_digest", "champion_data_digest")


@dataclass(frozen=True)
class Decision:
    model: str
    challenger: str
    champion: str | None
    data_digest: str  # the data prepared now, which the challenger must have been trained on
    split_digest: str  # the test rows both models are scored on
    champion_data_digest: str | None  # what the champion was trained on (evidence, not a gate)
    verdict: Verdict = field(default_factory=Verdict)
    # "challenger" / "champion" -> test metrics; empty when the data gates refused to compare.
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_p95_ms: float | None = None

    @property
    def promoted(self) -> bool:
        return self.verdict.passed


def promote(config: Config, version: str | None = None, ignore_champion: bool = False) -> Decision:
    """Decide on `version` (default: @challenger); move `champion` to it if every gate passes."""
    for metric in (config.promote.metric, *config.promote.thresholds):
        check_metric(config.data.task, metric)
    prepared = load_prepared(config.data)
    use_experiment(config.experiment)
    name = config.registered_model
    challenger = version or _required_alias(name, CHALLENGER)
    champion = None if ignore_champion else alias_version(name, CHAMPION)
    decision = _decide(config, prepared, challenger, champion)
    _record(decision, ignore_champion)
    if decision.promoted:
        client = MlflowClient()
        if champion is not None:
            client.set_registered_model_alias(name, PREVIOUS, champion)
        client.set_registered_model_alias(name, CHAMPION, challenger)
        log.info("%s v%s is @%s (previous: %s)", name, challenger, CHAMPION, champion)
        if alias_version(name, CANARY) == challenger:  # the canary graduates
            stop_canary(name)
    return decision


def rollback(config: Config) -> tuple[str | None, str]:
    """Point `champion` back at `previous` (and drop `previous`); return (from, to) versions."""
    configure_tracking()
    name, client = config.registered_model, MlflowClient()
    target = _required_alias(name, PREVIOUS)
    current = alias_version(name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, target)
    client.delete_registered_model_alias(name, PREVIOUS)
    now = _now()
    client.set_model_version_tag(name, target, "rollback.restored_at", now)
    if current is not None:
        client.set_model_version_tag(name, current, "rollback.demoted_at", now)
    log.info("rolled %s @%s back from v%s to v%s", name, CHAMPION, current, target)
    return current, target


def _decide(
    config: Config, prepared: PreparedData, challenger: str, champion: str | None
) -> Decision:
    name, split_digest = config.registered_model, frame_digest(prepared.splits.test)
    old_data = None if champion is None else _trained_on(name, champion)
    base = Decision(name, challenger, champion, prepared.digest, split_digest, old_data)
    if champion == challenger:
        gate = Gate("champion", False, f"v{challenger} is the champion already")
        return dataclasses.replace(base, verdict=Verdict((gate,)))
    data = (
        same_data("data:challenger", prepared.digest, _trained_on(name, challenger)),
        same_split("data:test_split", split_digest, prepared.test_digest),
    )
    if not all(gate.passed for gate in data):
        return dataclasses.replace(base, verdict=Verdict(data))
    metrics, latency = _measure(config, prepared, challenger, champion)
    gates = metric_gates(config.promote, metrics["challenger"], metrics.get("champion"), latency)
    verdict = Verdict((*data, *gates))
    return dataclasses.replace(base, verdict=verdict, metrics=metrics, latency_p95_ms=latency)


def _measure(
    config: Config, prepared: PreparedData, challenger: str, champion: str | None
) -> tuple[dict[str, dict[str, float]], float]:
    """Both models' metrics on the test split, and the challenger's p95 batch latency."""
    name, task = config.registered_model, config.data.task
    features, target = prepared.xy("test")
    metrics = {}
    if champion is not None:
        metrics["champion"] = _score_champion(name, champion, features, target, task)
    pyfunc, estimator = _load(name, challenger)
    metrics["challenger"] = evaluate(estimator, features, target, task)
    return metrics, _latency_p95_ms(pyfunc, features, config.promote, config.serve.model_threads)


def _score_champion(
    name: str, version: str, features: pd.DataFrame, target: pd.Series, task: str
) -> dict[str, float]:
    """The champion's test metrics; an error naming it if the new columns no longer fit it."""
    _, estimator = _load(name, version)
    try:
        return evaluate(estimator, features, target, task)
    except (KeyError, ValueError) as err:  # how scikit-learn and pandas report missing columns
        raise RegistryError(
            f"champion {name} v{version} cannot score the current test split "
            f"({first_line(err)}); judge the challenger alone with --ignore-champion"
        ) from None


def _record(decision: Decision, ignore_champion: bool) -> None:
    verdict = "promoted" if decision.promoted else "not promoted"
    summary = _summary(decision, verdict, ignore_champion)
    tags = {"mlops.step": "promote", "mlops.verdict": verdict}
    with owned_run(run_name=f"promote-v{decision.challenger}", tags=tags) as run:
        mlflow.log_params({k: summary[k] for k in PARAMS})
        for role, values in decision.metrics.items():
            mlflow.log_metrics({f"{role}_test_{k}": v for k, v in values.items()})
        if decision.latency_p95_ms is not None:
            mlflow.log_metric("challenger_latency_p95_ms", decision.latency_p95_ms)
        mlflow.log_dict(summary, "decision.json")
    client = MlflowClient()
    for key, value in _version_tags(summary, run.info.run_id).items():
        client.set_model_version_tag(decision.model, decision.challenger, key, value)


def _summary(decision: Decision, verdict: str, ignore_champion: bool) -> dict[str, Any]:
    return {
        "verdict": verdict,
        "challenger": decision.challenger,
        "champion": decision.champion or "none",
        "ignored_champion": ignore_champion,
        "data_digest": decision.data_digest,
        "split_digest": decision.split_digest,
        "champion_data_digest": decision.champion_data_digest or "none",
        "time": _now(),
        "metrics": decision.metrics,
        "latency_p95_ms": decision.latency_p95_ms,
        "gates": [asdict(gate) for gate in decision.verdict.gates],
        "reasons": decision.verdict.reasons,
    }


def _version_tags(summary: dict[str, Any], run_id: str) -> dict[str, str]:
    plain = {"verdict", "time", *PARAMS} - {"challenger"}
    tags = {f"promotion.{k}": str(v) for k, v in summary.items() if k in plain}
    tags["promotion.reasons"] = "; ".join(summary["reasons"]) or "every gate passed"
    tags["promotion.metrics"] = json.dumps(
        summary["metrics"] | {"latency": summary["latency_p95_ms"]}
    )
    tags["promotion.gates"] = json.dumps(summary["gates"])
    tags["promotion.run_id"] = run_id
    return tags


def _required_alias(name: str, alias: str) -> str:
    version = alias_version(name, alias)
    if version is None:
        raise RegistryError(f"registered model {name!r} has no @{alias} version")
    return version


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _load(name: str, version: str) -> tuple[Any, Any]:
    """The version's pyfunc model (what a server runs: the latency gate times it) and the fitted
    estimator inside, with `predict_proba` and `classes_` for ROC AUC and log loss: our sklearn
    flavor's raw model, or the `TorchMLP` our PyTorch python model holds as `model`."""
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except MlflowException:
        raise  # the registry or the store: reported as such by the script
    except Exception as err:  # the model's own code or files: whatever it raises, one line
        raise RegistryError(f"{name} v{version} cannot be loaded: {first_line(err)}") from err
    if "sklearn" in pyfunc.metadata.flavors:
        return pyfunc, pyfunc.get_raw_model()
    estimator = getattr(pyfunc.unwrap_python_model(), "model", None)
    if estimator is None or not callable(getattr(estimator, "predict", None)):
        raise RegistryError(f"{name} v{version} is neither a sklearn model nor our PyTorch model")
    return pyfunc, estimator


def _trained_on(name: str, version: str) -> str | None:
    """The data digest a version was trained on, without loading the model itself."""
    digest = MlflowClient().get_model_version(name, version).tags.get("data_digest")
    if not digest:
        metadata = mlflow.models.get_model_info(f"models:/{name}/{version}").metadata or {}
        digest = metadata.get("data_digest")
    return None if digest is None else str(digest)


def _latency_p95_ms(
    pyfunc: Any, features: pd.DataFrame, gate: PromoteConfig, torch_threads: int
) -> float:
    """p95 wall time of `pyfunc.predict` on a batch of rows drawn from `features`, after a warm-up.

    PyTorch runs with the server's intra-op threads (`serve.model_threads`): on a small network
    the thread pool's overhead, not the arithmetic, dominates.
    """
    rows = gate.latency_batch_rows
    batch = features.sample(n=rows, replace=rows > len(features), random_state=0)
    with torch_thread_limit(torch_threads):
        pyfunc.predict(batch)
        seconds = timeit.repeat(
            lambda: pyfunc.predict(batch), number=1, repeat=gate.latency_repeats
        )
    return float(np.percentile(seconds, 95)) * 1000.0
