"""What both clients share: request bodies from candles, and the error type."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

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


def predict_body(candles: Candles) -> dict[str, Any]:
    return {"candles": candles_payload(candles)}


def predict_batch_body(windows: Sequence[Candles]) -> dict[str, Any]:
    return {"windows": [{"candles": candles_payload(w)} for w in windows]}


def indicators_body(candles: Candles, all_rows: bool) -> dict[str, Any]:
    return {"candles": candles_payload(candles), "all_rows": all_rows}
