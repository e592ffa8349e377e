"""Named errors of the model server. A `RequestError` becomes one short JSON answer, never a trace.

`status` is the HTTP status; `reason` is a short fixed label (metrics, logs). Messages name the
column or setting at fault and never repeat the request body.
"""

from __future__ import annotations

from mlops.errors import MLOpsError


class RequestError(Exception):
    """A request the server refuses; the message is safe to send back to the client."""

    status = 400
    reason = "bad_request"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    @property
    def headers(self) -> dict[str, str]:
        return {}


class InputError(RequestError):
    """The payload does not match the model's signature or data profile."""


class UnsupportedMediaType(RequestError):
    status = 415
    reason = "unsupported_media_type"


class BodyTooLarge(RequestError):
    status = 413
    reason = "body_too_large"


class BodyTimeout(RequestError):
    status = 408
    reason = "body_timeout"


class Unauthorized(RequestError):
    status = 401
    reason = "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(RequestError):
    status = 403
    reason = "forbidden"


class NotFound(RequestError):
    status = 404
    reason = "not_found"


class Conflict(RequestError):
    status = 409
    reason = "conflict"


class NotReady(RequestError):
    status = 503
    reason = "not_ready"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class Overloaded(NotReady):
    reason = "overloaded"


class DeadlineExceeded(RequestError):
    status = 504
    reason = "timeout"


class PredictionFailed(RequestError):
    status = 500
    reason = "prediction_failed"


class ModelLoadError(MLOpsError):
    """A model cannot be resolved, loaded or warmed up; the message names the model URI."""


class UnservableModel(ModelLoadError):
    """The model loads but cannot be served (no signature, unsupported input schema)."""
