"""Which model is live: the first load (retried with backoff), hot reload, readiness and draining.

The server is live at once, even with the registry down, and ready once the first load and
warm-up succeed. An alias is watched every `reload_interval_s` (and on POST /admin/reload): a new
version is loaded and warmed up in a thread while the old one serves, then swapped in by one
assignment. A version that fails is not retried until the alias moves again (or an admin asks).
The same check follows the `canary` alias (canary.py), loading its version beside the live one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlops.config import ServeConfig
from mlops.registry import CANARY
from mlops.serving.canary import Canary, CanaryTarget, lookup_canary
from mlops.serving.errors import ModelLoadError, NotReady, RegistryUnavailable
from mlops.serving.metrics import Metrics
from mlops.serving.model import ServedModel, load_model, one_line
from mlops.serving.settings import ModelSource, resolve

log = logging.getLogger(__name__)

REGISTRY_WARNING_EVERY_S = 300.0
_YOUNG_OBJECTS = 50_000  # allocations between young collections (CPython default 700)
# What /admin/reload says when the lookup fails: the registry's address stays in the log.
REGISTRY_DOWN = "cannot reach the model registry; still serving the current version"


@dataclass(frozen=True)
class ReloadOutcome:
    reloaded: bool
    version: str  # the version serving after the attempt ("" when none is loaded)
    previous: str = ""
    error: str = ""


class WorkerMarks:
    """Readiness across worker processes: a probe reaches one worker, but traffic reaches all.
    A ready worker leaves a file `ready-<pid>` in a shared folder (files of dead processes do not
    count). The pod is first ready when every worker is; from then on while at least one is,
    since a worker restarted later joins the listening socket only once it is ready itself."""

    def __init__(self, folder: str, workers: int) -> None:
        self.folder = Path(folder) if folder else None
        self.workers = workers
        self.mark = self.folder / f"ready-{os.getpid()}" if self.folder else None

    def set(self, ready: bool) -> None:
        if self.mark is not None:
            if ready:
                self.mark.touch()
            else:
                self.mark.unlink(missing_ok=True)

    def pod_ready(self) -> bool:
        if self.folder is None:
            return True
        ready = len(self._ready_pids())
        complete = self.folder / "all-were-ready"
        if ready >= self.workers and not complete.exists():  # once, not on every probe
            complete.touch()
        return ready >= self.workers or (ready > 0 and complete.exists())

    def others_ready(self) -> bool:
        return any(pid != os.getpid() for pid in self._ready_pids())

    def _ready_pids(self) -> list[int]:
        if self.folder is None:  # one worker
            return []
        pids = [int(path.name.removeprefix("ready-")) for path in self.folder.glob("ready-*")]
        return [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class RateLimitedLog:
    """A failure that repeats (the registry down, polled every few seconds) is a WARNING the
    first time, then at most once per `every_s` with the count of checks in between; the
    recovery is one INFO line."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.failures = 0
        self.last_warning = -math.inf

    def failed(self, message: str) -> None:
        self.failures += 1
        now = time.monotonic()
        if now - self.last_warning < self.every_s:
            log.debug("%s", message)
            return
        self.last_warning = now
        log.warning("%s (%d failed check(s) so far)", message, self.failures)

    def recovered(self, message: str) -> None:
        if self.failures:
            log.info("%s after %d failed check(s)", message, self.failures)
        self.failures, self.last_warning = 0, -math.inf


class ModelManager:
    def __init__(
        self, source: ModelSource, config: ServeConfig, metrics: Metrics, marks: WorkerMarks
    ) -> None:
        self.source = source
        self.config = config
        self.metrics = metrics
        self.marks = marks
        self.current: ServedModel | None = None
        self.canary: Canary | None = None
        self.draining = False
        self._failed_version = ""
        self._failed_canary = ""
        self._lock = asyncio.Lock()
        self._loaded = asyncio.Event()
        self._registry_warnings = RateLimitedLog(REGISTRY_WARNING_EVERY_S)
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.current is not None and not self.draining and self.marks.pod_ready()

    def require(self) -> ServedModel:
        """The live model, or `NotReady` (503) while loading. A draining server still serves:
        requests keep arriving until the endpoints stop routing to it."""
        model = self.current
        if model is None:
            raise NotReady(f"model {self.source.uri} is not loaded yet")
        return model

    def pick(self, headers: Mapping[str, str], version: str | None = None) -> ServedModel:
        """The model that answers a prediction request (`version`: the one the path names)."""
        model, canary = self.require(), self.canary
        return model if canary is None else canary.pick(model, headers, version)

    def answered(self, model: ServedModel, ok: bool) -> None:
        """Count a prediction request's outcome for `model` (ok: not a 5xx); while a canary is in
        rotation, judge it."""
        self.metrics.answered(model, ok)
        canary = self.canary
        if canary is not None and canary.record(model, ok):
            self.metrics.canary_left(canary.model)

    async def wait_until_loaded(self) -> None:
        await self._loaded.wait()

    def start(self) -> None:
        self.metrics.model_ready.set(0)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.marks.set(False)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def begin_drain(self) -> None:
        self.draining = True
        self.marks.set(False)
        self.metrics.model_ready.set(0)

    async def _run(self) -> None:
        await self._first_load()
        if not self.source.alias:
            return
        await self.reload(forced=False)  # the canary, without waiting for the first interval
        if self.config.reload_interval_s <= 0:
            return
        while True:
            await asyncio.sleep(self.config.reload_interval_s)
            await self.reload(forced=False)

    async def _first_load(self) -> None:
        delay, most, last_error = self.config.load_retry_initial_s, self.config.load_retry_max_s, ""
        while self.current is None:
            try:
                model = await asyncio.to_thread(self._load)
            except ModelLoadError as err:
                self.metrics.loads.labels("initial", "failure").inc()
                if isinstance(err, RegistryUnavailable):
                    self.metrics.registry_errors.inc()
                level = logging.DEBUG if str(err) == last_error else logging.ERROR
                message = "not ready: %s (retrying in %.1f s, backoff up to %.1f s)"
                log.log(level, message, err, delay, most)
                last_error = str(err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, most)
            else:
                self._install(model, "initial")

    async def reload(self, forced: bool) -> ReloadOutcome:
        """Load the version the alias names now if it differs from the live one; then the same
        for the canary."""
        async with self._lock:
            outcome = await self._reload(forced)
            if outcome.version and outcome.error != REGISTRY_DOWN and self.source.alias != CANARY:
                await self._follow_canary(forced)
            return outcome

    async def _reload(self, forced: bool) -> ReloadOutcome:
        if self.current is None:
            return ReloadOutcome(False, "", error=f"model {self.source.uri} is not loaded yet")
        serving = self.current.ref.version
        try:
            ref = await asyncio.to_thread(resolve, self.source)
        except Exception as err:  # registry down or alias deleted: keep serving, say so
            self.metrics.registry_errors.inc()
            self._registry_warnings.failed(f"cannot look up {self.source.uri}: {one_line(err)}")
            return ReloadOutcome(False, serving, error=REGISTRY_DOWN)
        self._registry_warnings.recovered(f"{self.source.uri} can be looked up again")
        skip = ref.version == self._failed_version and not forced
        if ref.version == serving or skip:
            return ReloadOutcome(False, serving)
        return await self._swap(ref.version, serving)

    async def _swap(self, version: str, serving: str) -> ReloadOutcome:
        log.info("alias %s moved to version %s; loading it", self.source.uri, version)
        canary = self.canary
        try:
            if canary is not None and canary.model.ref.version == version:  # graduated
                ref = dataclasses.replace(canary.model.ref, alias=self.source.alias)
                model = dataclasses.replace(canary.model, ref=ref)
            else:
                model = await asyncio.to_thread(self._load)
        except ModelLoadError as err:
            self._failed_version = version
            self.metrics.loads.labels("reload", "failure").inc()
            log.error("reload failed, still serving version %s: %s", serving, err)
            error = f"version {version} failed to load or warm up (the server log says why)"
            return ReloadOutcome(False, serving, error=error)
        self._install(model, "reload")
        return ReloadOutcome(True, model.ref.version, previous=serving)

    async def _follow_canary(self, forced: bool) -> None:
        """Load, re-weigh or drop the canary as the registry says now."""
        try:
            target = await asyncio.to_thread(lookup_canary, self.source.name)
        except Exception as err:  # registry down: keep the canary as it is, say so
            self.metrics.registry_errors.inc()
            self._registry_warnings.failed(f"cannot look up @{CANARY}: {one_line(err)}")
            return
        canary, serving = self.canary, self.current
        if target is None or serving is None or target.version == serving.ref.version:
            self._failed_canary = ""
            self._drop_canary("no canary" if target is None else "it is the live version")
        elif canary is not None and canary.model.ref.version == target.version:
            if canary.target != target:
                canary.target = target
                log.info("%s from now on", target)
        elif target.version != self._failed_canary or forced:
            await self._load_canary(target)

    async def _load_canary(self, target: CanaryTarget) -> None:
        log.info("alias @%s moved to version %s; loading it", CANARY, target.version)
        self._drop_canary(f"version {target.version} replaces it")
        name, version = self.source.name, target.version
        source = ModelSource(f"models:/{name}/{version}", name, version=version)
        try:
            model = await asyncio.to_thread(self._load, source)
        except ModelLoadError as err:
            self._failed_canary = target.version
            self.metrics.loads.labels("canary", "failure").inc()
            log.error("canary version %s not in rotation, the champion answers: %s", version, err)
            return
        model = dataclasses.replace(model, ref=dataclasses.replace(model.ref, alias=CANARY))
        config = self.config
        self.canary = Canary(
            model, target, config.canary_window_requests, config.canary_max_error_excess
        )
        _freeze_heap()
        self._failed_canary = ""
        self.metrics.model_loaded(model, None, "canary")
        self.metrics.canary_active.set(1)
        self._serve_drift()
        log.info("%s", target)

    def _drop_canary(self, why: str) -> None:
        canary, self.canary = self.canary, None
        if canary is None:
            return
        self.metrics.canary_left(canary.model)
        self._serve_drift()
        log.info("canary version %s out of rotation: %s", canary.model.ref.version, why)

    def _serve_drift(self) -> None:
        canary = None if self.canary is None else self.canary.model
        self.metrics.drift_window.serve([m for m in (self.current, canary) if m is not None])

    def _load(self, source: ModelSource | None = None) -> ServedModel:
        config = self.config
        return load_model(source or self.source, config.warmup_rows, config.model_threads)

    def _install(self, model: ServedModel, kind: str) -> None:
        previous, self.current = self.current, model
        _freeze_heap()
        self._failed_version = ""
        self._loaded.set()
        self.metrics.model_loaded(model, previous, kind)
        self._serve_drift()
        self.metrics.model_ready.set(0 if self.draining else 1)
        self.marks.set(not self.draining)
        ref, path = model.ref, "fast path" if model.fast_path else "pyfunc path"
        message = "serving %s version %s (%s, loaded and warmed up in %.2f s)"
        log.info(message, ref.name, ref.version, path, model.load_seconds)


def _freeze_heap() -> None:
    """Every object alive now (libraries, the models) out of the garbage collector's reach, or
    each full collection walks hundreds of MB of heap and stalls every request behind it.
    Unfreezing first lets a replaced model's cycles be collected, once per load."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    # Under load, queued requests outlive the default 700-allocation young generation, so each
    # young collection promoted them and full collections followed every few hundred requests:
    # a third of the CPU time at concurrency 1024. A request's objects now die young.
    gc.set_threshold(_YOUNG_OBJECTS, *gc.get_threshold()[1:])
