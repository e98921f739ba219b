"""Client mistakes as BentoML exceptions carrying the contract's error body.

:class:`InvalidRequest` is a ``BadInput``: HTTP 400 and gRPC ``INVALID_ARGUMENT``. Its message
is the JSON body ``{"error": "..."}`` itself, so gRPC callers get it verbatim in the status
details and :mod:`serving.middleware` hands it to HTTP callers as the response body.
"""

from __future__ import annotations

import json

from bentoml.exceptions import BadInput

from serving.logs import log_event
from serving.metrics import service_metrics


class InvalidRequest(BadInput):
    """Invalid input. ``reason`` is a short label for metrics, ``error`` the message."""

    def __init__(self, error: str, *, reason: str):
        self.error = error
        self.reason = reason
        super().__init__(error_body(error))


def error_body(error: str) -> str:
    """The contract's error body: ``{"error": "<message>"}``."""
    return json.dumps({"error": error})


def reject(reason: str, error: str) -> InvalidRequest:
    """Count and log a rejected request; returns the exception for the caller to raise."""
    service_metrics().rejections.labels(reason=reason).inc()
    log_event("rejected", reason=reason, error=error)
    return InvalidRequest(error, reason=reason)
