"""Extract from the Binance spot REST API: ``GET /api/v3/klines`` paginated, and the exchange
clock from ``GET /api/v3/time``. Only these two endpoints, so that a server offering just them
is enough (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pandas as pd

from features.candles import CandleValidationError
from ingest._http import ExchangeError, RetryingGetter, RetryPolicy
from ingest._klines import KlineBatch, interval_timedelta, klines_batch

DEFAULT_BASE_URL = "https://api.binance.com"
MAX_LIMIT = 1000
"""Binance's largest ``limit`` for klines."""


_EPOCH = pd.Timestamp(0, tz="UTC")


def _ms(moment: pd.Timestamp) -> int:
    """Epoch milliseconds of a UTC timestamp (exact, whatever its resolution)."""
    return int((moment - _EPOCH) // pd.Timedelta(milliseconds=1))


class BinanceRest:
    """The two market-data endpoints of a Binance-compatible server at ``base_url``."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        policy: RetryPolicy | None = None,
        getter: RetryingGetter | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._http = getter or RetryingGetter(policy)

    @property
    def waited_s(self) -> float:
        return self._http.waited_s

    def server_time(self) -> pd.Timestamp:
        """The exchange's clock (``GET /api/v3/time``), the reference for "still forming"."""
        body = self._http.get_json(f"{self.base_url}/api/v3/time")
        value = body.get("serverTime") if isinstance(body, dict) else None
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ExchangeError(f"GET /api/v3/time: no integer serverTime in {body!r:.200}")
        return pd.Timestamp(value, unit="ms", tz="UTC")

    def klines(
        self, symbol: str, interval: str, *, start_ms: int, end_ms: int, limit: int = MAX_LIMIT
    ) -> list[Any]:
        """One ``GET /api/v3/klines`` page: at most ``limit`` klines opening in
        ``[start_ms, end_ms]``, oldest first."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be in [1, {MAX_LIMIT}], got {limit}")
        params = {
            "symbol": symbol,
            "interval": interval,
            "startTime": start_ms,
            "endTime": end_ms,
            "limit": limit,
        }
        body = self._http.get_json(f"{self.base_url}/api/v3/klines", params)
        if not isinstance(body, list):
            raise CandleValidationError(
                f"GET /api/v3/klines startTime={start_ms}: expected a JSON list of klines, got "
                f"{type(body).__name__}"
            )
        return body

    def pages(
        self,
        symbol: str,
        interval: str,
        *,
        start: pd.Timestamp,
        end: pd.Timestamp,
        limit: int = MAX_LIMIT,
    ) -> Iterator[KlineBatch]:
        """Every kline opening in ``[start, end]``, page by page (pages may overlap; the
        transform step removes what is met twice).

        The next page starts one interval after the last open time seen, so the cursor
        always moves forward; it stops at an empty page or once a page reaches ``end``.
        """
        step_ms = int(interval_timedelta(interval) // pd.Timedelta(milliseconds=1))
        cursor, end_ms = _ms(start), _ms(end)
        number = 0
        while cursor <= end_ms:
            number += 1
            rows = self.klines(symbol, interval, start_ms=cursor, end_ms=end_ms, limit=limit)
            if not rows:
                return
            names = [f"klines page {number} (startTime={cursor}) row {i}" for i in range(len(rows))]
            batch = klines_batch(rows, source=f"klines page {number}", row_names=names, unit="ms")
            yield batch
            last_open = _ms(batch.frame["timestamp"].max())
            cursor = max(cursor, last_open) + step_ms
            if last_open + step_ms > end_ms:
                return

    def page_estimate(self, interval: str, start: pd.Timestamp, end: pd.Timestamp) -> int:
        """How many full pages ``[start, end]`` needs (for a progress bar)."""
        bars = max(0.0, (end - start) / interval_timedelta(interval))
        return max(1, math.ceil(bars / MAX_LIMIT))

    def close(self) -> None:
        self._http.close()
