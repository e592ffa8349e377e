"""Named errors of the model server. A `RequestError` becomes one short JSON answer, never a trace.

`status` is the HTTP status; `reason` is a short fixed label (metrics, logs). Messages name the
column or setting at fault and never repeat the request body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from mlops.errors import MLOpsError


class RequestError(Exception):
    """A request the server refuses; the message is safe to send back to the client."""

    status, reason = 400, "bad_request"
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InputError(RequestError):
    """The payload does not match the model's signature or data profile."""


class UnsupportedMediaType(RequestError):
    status, reason = 415, "unsupported_media_type"


class BodyTooLarge(RequestError):
    status, reason = 413, "body_too_large"


class BodyTimeout(RequestError):
    status, reason = 408, "body_timeout"


class Unauthorized(RequestError):
    status, reason = 401, "unauthorized"
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": "Bearer"}


class Forbidden(RequestError):
    status, reason = 403, "forbidden"


class NotFound(RequestError):
    status, reason = 404, "not_found"


class Conflict(RequestError):
    status, reason = 409, "conflict"


class NotReady(RequestError):
    status, reason = 503, "not_ready"
    headers: ClassVar[Mapping[str, str]] = {"Retry-After": "1"}


class DeadlineExceeded(RequestError):
    status, reason = 504, "timeout"


class PredictionFailed(RequestError):
    status, reason = 500, "prediction_failed"


class ModelLoadError(MLOpsError):
    """A model cannot be resolved, loaded, served (no column signature) or warmed up; the message
    names the model URI."""


class RegistryUnavailable(ModelLoadError):
    """The model URI cannot be resolved: the registry is down, or the alias or version is gone."""
