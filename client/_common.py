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


def _window_body(candles: Candles, position: str | None, bars_held: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"candles": candles_payload(candles)}
    if position is not None:
        body["position"] = position
    if bars_held is not None:
        body["bars_held"] = int(bars_held)
    return body


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

    def predict(
        self, candles: Candles, *, position: str | None = None, bars_held: int | None = None
    ) -> dict[str, Any]:
        """``probability_up``, ``signal``, ``model_tag``, ``timestamp``, ``horizon_bars``.

        ``position`` (``"flat"``, ``"long"``, ``"short"`` where the model's policy allows it)
        is the position held now, ``bars_held`` for how many bars (the last candle included):
        ``signal`` is then the target position after the model's decision policy. Feed each
        answer back: the next ``position`` is this ``signal``, the next ``bars_held`` is
        ``bars_held + 1`` if the signal kept the position, else 1.
        """
        return self.call("predict", _window_body(candles, position, bars_held))

    def predict_batch(
        self,
        windows: Sequence[Candles],
        *,
        positions: Sequence[str] | None = None,
        bars_held: Sequence[int | None] | None = None,
    ) -> list[dict[str, Any]]:
        """One prediction per window, in order (one request); ``positions``/``bars_held``,
        one per window, as in :meth:`predict`."""
        n = len(windows)
        for name, values in (("positions", positions), ("bars_held", bars_held)):
            if values is not None and len(values) != n:
                raise ValueError(f"{name} needs one value per window ({n}), got {len(values)}")
        body = {
            "windows": [
                _window_body(
                    w,
                    None if positions is None else positions[i],
                    None if bars_held is None else bars_held[i],
                )
                for i, w in enumerate(windows)
            ]
        }
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
