"""What both clients share: the APIs over a transport, request bodies, the error type."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Self, TypeAlias

import pandas as pd

CANDLE_FIELDS = ("timestamp", "open", "high", "low", "close", "volume")

Candles: TypeAlias = pd.DataFrame | Sequence[Mapping[str, Any]]
"""A window: a frame with the candle columns, or a list of candle dicts, oldest first."""


class ServiceError(Exception):
    """The service refused or failed a call.

    Attributes:
        status: the HTTP status (e.g. 400) or the gRPC status name (e.g. ``INVALID_ARGUMENT``).
        error: the server's message (the ``error`` field of its answer).
    """

    def __init__(self, status: int | str, error: str):
        super().__init__(f"{status}: {error}")
        self.status = status
        self.error = error


def error_message(body: str | bytes) -> str:
    """The ``error`` field of an error body, or the body itself if it is not one."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if isinstance(parsed, dict) and "error" in parsed:
        return str(parsed["error"])
    return str(parsed)


def candles_payload(candles: Candles) -> list[dict[str, Any]]:
    """Candle dicts for a request; frame timestamps become ISO 8601 UTC strings (``...Z``)."""
    if not isinstance(candles, pd.DataFrame):
        return [dict(c) for c in candles]
    missing = [c for c in CANDLE_FIELDS if c not in candles.columns]
    if missing:
        raise ValueError(f"candle frame lacks column(s) {missing}")
    stamps = pd.to_datetime(candles["timestamp"])
    if stamps.dt.tz is None:
        raise ValueError("candle timestamps must be timezone-aware (naive ones are rejected)")
    iso = stamps.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    values = candles[list(CANDLE_FIELDS[1:])].astype("float64")
    records = values.to_dict(orient="records")
    for record, stamp in zip(records, iso, strict=True):
        record["timestamp"] = stamp
    return records


class ServiceClient(ABC):
    """The APIs, written once over a transport's :meth:`call` (HTTP or gRPC)."""

    @abstractmethod
    def call(self, api: str, payload: Any, *, request_id: str | None = None) -> Any:
        """Call ``api`` with ``payload`` (JSON-able, or JSON bytes as they are); the decoded
        answer, or :class:`ServiceError`."""

    @abstractmethod
    def is_ready(self) -> bool:
        """The server is up and its model loaded."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def predict(self, candles: Candles) -> dict[str, Any]:
        """``probability_up``, ``signal``, ``model_tag``, ``timestamp``, ``horizon_bars``."""
        return self.call("predict", {"candles": candles_payload(candles)})

    def predict_batch(self, windows: Sequence[Candles]) -> list[dict[str, Any]]:
        """One prediction per window, in order (one request)."""
        body = {"windows": [{"candles": candles_payload(w)} for w in windows]}
        return self.call("predict", body)["predictions"]

    def indicators(self, candles: Candles, *, all_rows: bool = False) -> dict[str, Any]:
        """Feature values of the last candle (``all_rows``: also every warmed-up candle)."""
        return self.call("indicators", {"candles": candles_payload(candles), "all_rows": all_rows})

    def model_info(self) -> dict[str, Any]:
        """Tag, stage, metrics, feature contract and data ranges of the served model."""
        return self.call("model_info", {})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
