"""The canary: a second version beside the champion that answers a share of prediction requests.

The model manager (lifecycle.py) looks up the `canary` alias and its weight tag on every alias
check, loads and warms the version up beside the champion, then puts a `Canary` in rotation. A
request goes to it with probability weight / 100, or, when it carries `X-Routing-Key`, when a
stable hash of the key falls below the weight: the same key lands on the same version in every
worker and pod. In shadow mode the champion answers every request, and that share of them is
also predicted by the canary in the background (`copies`), to compare latency and predictions.
While a canary is in rotation both sides' last `window` answers are remembered (an error is a
5xx); a canary whose error ratio exceeds the champion's by more than `max_excess` is taken out of
rotation, and the champion answers everything until the alias moves.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow import MlflowClient

from mlops.registry import CANARY, CANARY_MODE_TAG, CANARY_WEIGHT_TAG
from mlops.serving.model import ServedModel

log = logging.getLogger(__name__)

ROUTING_HEADER = "x-routing-key"
_KEY_BUCKETS = 10_000  # a routing key's hash picks one of these: weights to 0.01 %


@dataclass(frozen=True)
class CanaryTarget:
    """What the registry says now: the version @canary names, its percent of requests, and
    whether it only gets copies of them (shadow mode)."""

    version: str
    weight: float
    shadow: bool = False

    def __str__(self) -> str:
        share = "gets a copy of" if self.shadow else "answers"
        return f"canary version {self.version} {share} {self.weight:g} % of requests"


def lookup_canary(name: str) -> CanaryTarget | None:
    """@canary of registered model `name` and its weight (blocking registry I/O). A weight that
    is missing or not a number counts as 0: loaded and watched, but sent no requests."""
    model = MlflowClient().get_registered_model(name)
    version = model.aliases.get(CANARY)
    if version is None:
        return None
    try:
        weight = float(model.tags.get(CANARY_WEIGHT_TAG, 0))
    except ValueError:
        weight = 0.0
    shadow = model.tags.get(CANARY_MODE_TAG) == "shadow"
    return CanaryTarget(str(version), min(max(weight, 0.0), 100.0), shadow)


class Canary:
    def __init__(
        self, model: ServedModel, target: CanaryTarget, window: int, max_excess: float
    ) -> None:
        self.model = model
        self.target = target
        self.active = True
        self.window = window
        self.max_excess = max_excess
        self._errors = {True: deque[bool](maxlen=window), False: deque[bool](maxlen=window)}

    def pick(
        self, champion: ServedModel, headers: Mapping[str, str], version: str | None
    ) -> ServedModel:
        """The canary for its share of requests (or when `version`, the one a request's path
        names, is the canary's) while in rotation; else the champion."""
        if not self.active:
            return champion
        if version is not None:
            return self.model if version == self.model.ref.version else champion
        if self.target.shadow:
            return champion
        key = headers.get(ROUTING_HEADER)
        share = random.random() * 100 if key is None else _key_share(key)
        return self.model if share < self.target.weight else champion

    def copies(self) -> bool:
        """Whether the request just answered by the champion also goes to the canary (shadow)."""
        target = self.target
        return target.shadow and self.active and random.random() * 100 < target.weight

    def record(self, model: ServedModel, ok: bool) -> bool:
        """Remember one answer of `model`; True when it takes the canary out of rotation."""
        is_canary = model is self.model
        self._errors[is_canary].append(not ok)
        if ok or not is_canary or not self.active:
            return False
        canary_ratio, champion_ratio = self.error_ratios()
        self.active = canary_ratio - champion_ratio <= self.max_excess
        if not self.active:
            message = "canary version %s out of rotation: %.1f %% of its last %d answers failed"
            log.error(
                message + ", the champion's %.1f %%",
                self.model.ref.version,
                100 * canary_ratio,
                self.window,
                100 * champion_ratio,
            )
        return not self.active

    def error_ratios(self) -> tuple[float, float]:
        """(canary, champion). The canary's errors are divided by the whole window even before it
        fills: a lower bound of the full window's ratio, so a failing canary leaves after a few
        errors rather than after `window` requests."""
        champion = self._errors[False]
        return sum(self._errors[True]) / self.window, sum(champion) / max(1, len(champion))


def _key_share(key: str) -> float:
    """The key's place in [0, 100): the same in every process (Python's `hash` is salted)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest) % _KEY_BUCKETS * 100 / _KEY_BUCKETS
