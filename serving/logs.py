"""Structured logs: one JSON object per line, each with the request id.

The request id comes from the caller's ``X-Request-ID`` header (HTTP) or ``x-request-id``
metadata (gRPC) when it is a sane token, else a fresh one; it is echoed back the same way.
Nothing is configured at import: :func:`configure_logging` runs at service start-up.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from bentoml.exceptions import BadInput

LOGGER_NAME = "btcusdt.serving"
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID: ContextVar[str | None] = ContextVar("btcusdt_request_id", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

logger = logging.getLogger(LOGGER_NAME)


def new_request_id(given: str | None = None) -> str:
    """``given`` if it is a short token of safe characters, else a fresh random id."""
    if given and _SANE_ID.match(given):
        return given
    return uuid.uuid4().hex


def set_request_id(request_id: str) -> None:
    _REQUEST_ID.set(request_id)


def current_request_id() -> str:
    """The id of the request being handled; a fresh one is made (and kept) if none is set."""
    request_id = _REQUEST_ID.get()
    if request_id is None:
        request_id = new_request_id()
        _REQUEST_ID.set(request_id)
    return request_id


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "event", "request_id", ...fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            "request_id": _REQUEST_ID.get(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _DropClientErrorTracebacks(logging.Filter):
    """BentoML logs every BadInput with a traceback; a client mistake is not a server error
    (the service's own, :class:`serving.errors.InvalidRequest`, is logged once, as a
    ``rejected`` event)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, BadInput)


def configure_logging(level: str = "INFO") -> None:
    """Send this package's logs to stderr as JSON lines (idempotent)."""
    logger.setLevel(level.upper())
    logger.propagate = False
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    for name in (
        "bentoml._internal.server.http_app",
        "bentoml._internal.server.grpc.servicer.v1",
    ):
        bentoml_logger = logging.getLogger(name)
        if not any(isinstance(f, _DropClientErrorTracebacks) for f in bentoml_logger.filters):
            bentoml_logger.addFilter(_DropClientErrorTracebacks())


def log_event(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event with its fields."""
    logger.log(level, event, extra={"fields": fields})
