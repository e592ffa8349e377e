"""Prometheus metrics of the model server, exposed at GET /metrics.

Names follow Prometheus conventions: `mlops_` prefix, base units (seconds), `_total` on counters
(added by prometheus-client). With several workers, `PROMETHEUS_MULTIPROC_DIR` is set before they
start (see server.py) and /metrics merges every worker's values; gauges say how (`livesum`, ...).
Metric objects live on a private registry created with the app, never at import time. Every
prediction metric has a `version` label, so that a canary (canary.py) can be compared with the
champion; the series of one version are looked up once and kept (`_ByVersion`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

from mlops.serving.drift import DriftMonitor
from mlops.serving.errors import RequestError

# The statuses of a request at fault (bad input, too large, wrong media type).
_VALIDATION_STATUSES = frozenset({400, 413, 415})

if TYPE_CHECKING:
    from mlops.serving.model import Prediction, ServedModel

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
_BINCOUNT_MAX = 1024  # integer labels below this are counted with np.bincount


class Metrics:
    def __init__(self, prediction_buckets: Sequence[float], drift_window_rows: int = 0) -> None:
        self.multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        self.registry = registry = CollectorRegistry()
        if not self.multiprocess:  # per-process collectors cannot be merged across workers
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        counter = partial(Counter, registry=registry)
        self.requests = counter(
            "mlops_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["endpoint", "method", "status"],
        )
        self.latency = Histogram(
            "mlops_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "mlops_http_requests_in_flight",
            "Requests being served now (probes and /metrics excluded).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.validation_errors = counter(
            "mlops_validation_errors",
            "Requests refused before predict (400, 413, 415), by reason.",
            ["reason"],
        )
        self.drift = counter(
            "mlops_input_out_of_profile_values",
            "Values of predicted rows outside the training range or category set, by column.",
            ["version", "column"],
        )
        self.answers = counter(
            "mlops_model_requests",
            "Prediction requests a model version answered, by result (error: a 5xx answer).",
            ["version", "result"],
        )
        self.shadow_rows = counter(
            "mlops_shadow_rows",
            "Rows a shadow canary predicted, by whether it agreed with the champion's answer.",
            ["version", "result"],
        )
        self.shadow_seconds = Histogram(
            "mlops_shadow_duration_seconds",
            "Time from a shadow copy's queueing to the canary's predictions.",
            ["version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._batch_metrics(registry, prediction_buckets)
        self._model_metrics(registry)
        self.drift_window = DriftMonitor(registry, drift_window_rows)
        self._versions: dict[str, _ByVersion] = {}

    def _batch_metrics(self, registry: CollectorRegistry, buckets: Sequence[float]) -> None:
        by_version = {"labelnames": ["version"], "registry": registry}
        latency = partial(Histogram, buckets=LATENCY_BUCKETS, **by_version)
        rows = partial(Histogram, buckets=ROW_BUCKETS, **by_version)
        self.rows = Counter("mlops_predicted_rows", "Rows predicted.", **by_version)
        self.batch_rows = rows("mlops_batch_size_rows", "Rows per predict call.")
        self.batch_requests = rows(
            "mlops_batch_size_requests", "Requests coalesced into one predict call."
        )
        self.queue_wait = latency(
            "mlops_batch_queue_wait_seconds",
            "Time a request waited in the batch queue before its predict call started.",
        )
        self.predict_seconds = latency(
            "mlops_batch_predict_duration_seconds", "Duration of one predict call (a whole batch)."
        )
        self.classes = Counter(
            "mlops_predictions",
            "Predicted labels of classifiers, by class.",
            ["version", "class"],
            registry=registry,
        )
        self.values = Histogram(
            "mlops_prediction_value",
            "Predicted values of regressors.",
            buckets=tuple(buckets),
            **by_version,
        )

    def _model_metrics(self, registry: CollectorRegistry) -> None:
        gauge, counter = partial(Gauge, registry=registry), partial(Counter, registry=registry)
        self.model_info = gauge(
            "mlops_model_info",
            "The model serving predictions (value 1); earlier ones drop to 0.",
            ["name", "version", "alias", "run_id"],
            multiprocess_mode="livemax",
        )
        self.model_ready = gauge(
            "mlops_model_ready",
            "1 when a model is loaded, warmed up and the server is not draining.",
            multiprocess_mode="livemin",
        )
        self.load_seconds = gauge(
            "mlops_model_load_duration_seconds",
            "Time the current model took to resolve, load and warm up.",
            multiprocess_mode="livemax",
        )
        self.loads = counter(
            "mlops_model_loads",
            "Model loads by kind (initial, reload) and result (success, failure).",
            ["kind", "result"],
        )
        self.registry_errors = counter(
            "mlops_registry_errors", "Failed registry look-ups while watching the alias."
        )
        self.canary_active = gauge(
            "mlops_canary_active",
            "1 while a canary version answers its share of requests (every worker's, if several).",
            multiprocess_mode="livemin",
        )

    def exposition(self) -> bytes:
        self.drift_window.publish()
        if not self.multiprocess:
            return bytes(generate_latest(self.registry))
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return bytes(generate_latest(merged))

    def series(self, model: ServedModel) -> _ByVersion:
        found = self._versions.get(model.ref.version)
        if found is None:
            found = self._versions[model.ref.version] = _ByVersion.of(self, model.ref.version)
        return found

    def canary_left(self, model: ServedModel) -> None:
        """The canary `model` answers no more requests (stopped, replaced or taken out)."""
        self.canary_active.set(0)
        self.model_info.labels(*info_labels(model)).set(0)

    def refused(self, error: RequestError) -> None:
        """Count a request turned away for what it sent (either protocol) by its reason."""
        if error.status in _VALIDATION_STATUSES:
            self.validation_errors.labels(error.reason).inc()

    def answered(self, model: ServedModel, ok: bool) -> None:
        series = self.series(model)
        (series.ok if ok else series.error).inc()

    def shadowed(
        self, model: ServedModel, seconds: float, answer: Prediction, copy: Prediction
    ) -> None:
        """A shadow copy's latency, and its rows that differ from the champion's answer (any
        difference: for regressors compare `mlops_prediction_value` by version instead)."""
        version = model.ref.version
        self.shadow_seconds.labels(version).observe(seconds)
        ours, theirs = np.ravel(np.asarray(answer.values)), np.ravel(np.asarray(copy.values))
        differ = int((ours != theirs).sum()) if ours.shape == theirs.shape else ours.size
        self.shadow_rows.labels(version, "disagree").inc(differ)
        self.shadow_rows.labels(version, "agree").inc(ours.size - differ)

    def observe_batch(self, model: ServedModel, waits: Sequence[float]) -> None:
        series = self.series(model)
        series.batch_requests.observe(len(waits))
        for wait in waits:
            series.queue_wait.observe(wait)

    def observe_predict(
        self, model: ServedModel, seconds: float, parts: Sequence[Prediction]
    ) -> None:
        series = self.series(model)
        series.predict_seconds.observe(seconds)
        values = [part.values for part in parts]
        n_rows = sum(len(v) if hasattr(v, "__len__") else 1 for v in values)
        series.batch_rows.observe(n_rows)
        series.rows.inc(n_rows)
        if model.task == "classification" or model.classes:
            self._count_classes(model.ref.version, values)
        elif model.task == "regression":
            for value in np.concatenate([np.ravel(v) for v in values]).astype(float):
                series.values.observe(value)

    def _count_classes(self, version: str, values: list[Any]) -> None:
        labels = np.concatenate([np.ravel(v) for v in values])
        integers = labels.dtype.kind in "iu" and labels.size > 0
        if integers and labels.min() >= 0 and labels.max() < _BINCOUNT_MAX:
            counts = np.bincount(labels)  # faster than np.unique, which sorts
            found = np.flatnonzero(counts)
            pairs = zip(found.tolist(), counts[found].tolist(), strict=True)
        else:
            unique, counts = np.unique(labels, return_counts=True)
            pairs = zip(unique.tolist(), counts.tolist(), strict=True)
        for label, count in pairs:
            self.classes.labels(version, str(label)).inc(count)

    def model_loaded(self, model: ServedModel, previous: ServedModel | None, kind: str) -> None:
        if previous is not None:
            self.model_info.labels(*info_labels(previous)).set(0)
        self.model_info.labels(*info_labels(model)).set(1)
        self.series(model)  # at zero from the start: "no predictions yet" is a series too
        if kind != "canary":
            self.load_seconds.set(model.load_seconds)
        self.loads.labels(kind, "success").inc()


@dataclass(frozen=True)
class _ByVersion:
    """One version's series of the prediction metrics."""

    rows: Counter
    batch_rows: Histogram
    batch_requests: Histogram
    queue_wait: Histogram
    predict_seconds: Histogram
    values: Histogram
    ok: Counter
    error: Counter

    @classmethod
    def of(cls, metrics: Metrics, version: str) -> _ByVersion:
        return cls(
            rows=metrics.rows.labels(version),
            batch_rows=metrics.batch_rows.labels(version),
            batch_requests=metrics.batch_requests.labels(version),
            queue_wait=metrics.queue_wait.labels(version),
            predict_seconds=metrics.predict_seconds.labels(version),
            values=metrics.values.labels(version),
            ok=metrics.answers.labels(version, "ok"),
            error=metrics.answers.labels(version, "error"),
        )


def info_labels(model: ServedModel) -> tuple[str, str, str, str]:
    ref = model.ref
    return ref.name, ref.version, ref.alias, ref.run_id
