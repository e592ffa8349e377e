"""The Starlette application: routes of both protocols, /metrics, /admin/reload, errors as JSON.

`create_app(settings)` builds it; nothing happens at import. The lifespan opens the resources
(tracking URI, model manager, batcher, the gRPC service on `grpc_port`) and hooks SIGTERM so
readiness turns false at once while requests are still served for `serve.drain_s` (guard.py).
Every error is a short JSON body: MLflow's shape on /invocations, `{"error": ...}` elsewhere;
never a stack trace, never the request echoed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops.serving import mlflow_protocol, v2
from mlops.serving.batching import Batcher
from mlops.serving.errors import Conflict, Forbidden, RequestError
from mlops.serving.guard import SHED_MESSAGE, Guard, drain_on_signals
from mlops.serving.http import JSON_TYPE, Services, check_token, dumps, json_response, services
from mlops.serving.lifecycle import REGISTRY_DOWN, ModelManager, WorkerMarks
from mlops.serving.metrics import Metrics
from mlops.serving.probes import Answer, start_probes
from mlops.serving.settings import ServerSettings
from mlops.tracking import configure_tracking

log = logging.getLogger(__name__)

# Probes and scrapes are not "in flight" work; they are still counted by endpoint and status.
_NOT_IN_FLIGHT = frozenset({"/metrics", "/v2/health/live", "/v2/health/ready", "/ping", "/health"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_HTTP_MESSAGES = {404: "not found", 405: "method not allowed"}


def create_app(settings: ServerSettings) -> Starlette:
    metrics = Metrics(settings.serve.prediction_buckets, settings.serve.drift_window_rows)
    mlflow_routes, v2_routes = mlflow_protocol.routes(), v2.routes()
    shed = [(r, mlflow_protocol.error_body(503, SHED_MESSAGE)) for r in mlflow_routes]
    shed += [(r, dumps({"error": SHED_MESSAGE})) for r in v2_routes]
    predict_routes = [(r, body) for r, body in shed if "POST" in (getattr(r, "methods", ()) or ())]
    # Prediction routes first: Starlette tries routes in order, and the ten in front of v2's
    # infer route took 14 us a request to try, a tenth of what a 1-row request costs in all.
    routes = [route for route, _ in predict_routes]
    routes += [r for r in (*mlflow_routes, *v2_routes) if r not in routes]
    routes += [Route("/metrics", scrape), Route("/admin/reload", admin_reload, methods=["POST"])]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(Guard, shed_bodies=predict_routes, probe=_load_state),
        ],
        exception_handlers={
            RequestError: partial(request_error, metrics),
            HTTPException: http_error,
            Exception: server_error,
        },
        lifespan=partial(lifespan, settings=settings, metrics=metrics),
    )


@asynccontextmanager
async def lifespan(
    app: Starlette, settings: ServerSettings, metrics: Metrics
) -> AsyncIterator[dict[str, Services]]:
    configure_tracking()
    config = settings.serve
    marks = WorkerMarks(settings.ready_dir, config.workers)
    models = ModelManager(settings.source, config, metrics, marks)
    batcher = Batcher(metrics, config)
    batcher.start()
    models.start()
    if threading.current_thread() is threading.main_thread():
        drain_on_signals(models.begin_drain, config.drain_s)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_token:
        log.warning("predictions on %s need no token: set MLOPS_API_TOKEN", settings.host)
    if marks.others_ready():
        # A worker restarted beside ready ones accepts connections only once it is ready too,
        # so the pod stays ready and no request lands on a worker still loading.
        await models.wait_until_loaded()
    probes = None
    if settings.probe_port:
        answer = partial(_probe_answer, models, metrics)
        probes = start_probes(settings.host, settings.probe_port, answer)
    found = Services(settings, models, batcher, metrics)
    grpc_server = await _start_grpc(found) if settings.grpc_port else None
    try:
        yield {"services": found}
    finally:
        if grpc_server is not None:  # after HTTP has drained: in-flight calls get the same time
            await grpc_server.stop(config.drain_timeout_s)
        if probes is not None:
            probes.shutdown()
            probes.server_close()
        await models.stop()
        await batcher.stop()


async def _start_grpc(found: Services) -> Any:
    # Imported here, only when the port is on: the generated messages join protobuf's global
    # registry, where a client library's copy of the same protocol (tritonclient's, in a test
    # process that also builds this app) would clash with them.
    from mlops.serving.grpc_service import start_grpc

    return await start_grpc(found)


def _probe_answer(models: ModelManager, metrics: Metrics, path: str) -> Answer:
    """What the probe port (probes.py) answers for `path`, as the main port does."""
    if path == "/v2/health/live":
        return 200, v2.LIVE, JSON_TYPE
    if path == "/v2/health/ready":
        return (*v2.readiness(models), JSON_TYPE)
    if path == "/metrics":
        return 200, metrics.exposition(), CONTENT_TYPE_LATEST
    return 404, b'{"error":"not found"}', JSON_TYPE


def _load_state(scope: Scope) -> tuple[bool, bool]:
    """(full, draining) for the Guard middleware."""
    found: Services = scope["state"]["services"]
    return found.batcher.full(), found.models.draining


async def scrape(request: Request) -> Response:
    return Response(services(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def admin_reload(request: Request) -> Response:
    """Check the alias now; load, warm up and swap in the version it names if it moved."""
    found = services(request)
    if not found.settings.admin_token:
        raise Forbidden("admin endpoints are disabled: MLOPS_ADMIN_TOKEN is not set")
    check_token(request, found.settings.admin_token)
    if not found.settings.source.alias:
        raise Conflict(f"model URI {found.settings.source.uri} is not an alias: nothing to reload")
    outcome = await found.models.reload(forced=True)
    # Nothing loaded yet, or the registry down: unavailable for now. A version that fails: 500.
    unavailable = not outcome.version or outcome.error == REGISTRY_DOWN
    status = 200 if not outcome.error else 503 if unavailable else 500
    return json_response(dumps(dataclasses.asdict(outcome)), status)


async def request_error(metrics: Metrics, request: Request, error: RequestError) -> Response:
    metrics.refused(error)
    headers = dict(error.headers)
    if error.status == 413:  # the rest of the body is never read: close the connection
        headers["Connection"] = "close"
    if request.url.path == "/invocations":
        body = mlflow_protocol.error_body(error.status, error.message)
    else:
        body = dumps({"error": error.message})
    return json_response(body, error.status, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = exc.headers if isinstance(exc, HTTPException) else None
    message = _HTTP_MESSAGES.get(status, "bad request")
    return json_response(dumps({"error": message}), status, dict(headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    return json_response(dumps({"error": "internal server error"}), 500)


class MetricsMiddleware:
    """Requests by route template, method and status; latency; in-flight work (pure ASGI)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        counted = scope["path"] not in _NOT_IN_FLIGHT

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        if counted:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            if counted:
                self.metrics.in_flight.dec()
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.requests.labels(endpoint, method, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
