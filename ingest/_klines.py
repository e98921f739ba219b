"""Binance's kline format, shared by the archive files and the REST API.

A kline is 12 values: open time, open, high, low, close, volume, close time, quote asset
volume, number of trades, taker buy base volume, taker buy quote volume, ignore
(https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints).
Prices and volumes are decimal strings; times are epoch milliseconds (REST, and archive files
up to 2024) or microseconds (spot archive files from 2025-01-01).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.candles import OHLCV_COLUMNS, TIMESTAMP_COLUMN, CandleValidationError

KLINE_FIELDS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
"""The 12 columns, named as in the header row of Binance's newer archive CSVs."""

CLOSE_TIME_COLUMN = "close_time"

INTERVALS: dict[str, pd.Timedelta] = {
    **{f"{n}m": pd.Timedelta(minutes=n) for n in (1, 3, 5, 15, 30)},
    **{f"{n}h": pd.Timedelta(hours=n) for n in (1, 2, 4, 6, 8, 12)},
    "1d": pd.Timedelta(days=1),
    "3d": pd.Timedelta(days=3),
    "1w": pd.Timedelta(weeks=1),
}
"""Binance's fixed-length kline intervals (``1M`` has no fixed length and is not supported)."""

MICROSECOND_THRESHOLD = 10**14
"""Epoch values above this are microseconds: 1e14 ms is the year 5138, 1e14 us is 1973."""


def interval_timedelta(interval: str) -> pd.Timedelta:
    """The length of a Binance interval name (``1h`` -> 1 hour).

    Raises:
        CandleValidationError: not one of :data:`INTERVALS`.
    """
    try:
        return INTERVALS[interval]
    except KeyError:
        raise CandleValidationError(
            f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}"
        ) from None


@dataclass(frozen=True)
class KlineBatch:
    """Klines from one page or one file, parsed but not yet validated.

    ``frame`` has the contract's columns (``timestamp`` tz-aware UTC open time; OHLCV still as
    given, validated later by the one candle rule set) plus ``close_time``; ``row_names`` name
    each row for error messages (``page 3 row 17``, ``BTCUSDT-1h-2024-01.zip line 5``).
    """

    source: str
    frame: pd.DataFrame
    row_names: tuple[str, ...]


def epoch_to_utc(values: np.ndarray, unit: str) -> pd.DatetimeIndex:
    """Integer epoch ``ms`` or ``us`` values as UTC timestamps (microsecond resolution)."""
    return pd.DatetimeIndex(pd.to_datetime(values, unit=unit, utc=True)).as_unit("us")


def klines_batch(
    rows: Sequence[Sequence[object]] | pd.DataFrame,
    *,
    source: str,
    row_names: Sequence[str],
    unit: str,
) -> KlineBatch:
    """Turn raw 12-value klines into a :class:`KlineBatch`.

    Checks what is specific to the format (12 fields, integer times, close time after open
    time); the candle rules proper (prices > 0, high >= low, order...) are
    :func:`features.candles.validate_candles`'s.

    Raises:
        CandleValidationError: naming the row and the rule.
    """
    raw = rows if isinstance(rows, pd.DataFrame) else _rows_frame(rows, row_names)
    open_ms = _integer_column(raw, 0, "open time", row_names)
    close_ms = _integer_column(raw, 6, "close time", row_names)
    bad = close_ms <= open_ms
    if bad.any():
        i = int(np.argmax(bad))
        raise CandleValidationError(
            f"{row_names[i]}: close time ({close_ms[i]}) must be after open time ({open_ms[i]})"
        )
    frame = pd.DataFrame({TIMESTAMP_COLUMN: epoch_to_utc(open_ms, unit)})
    for position, name in enumerate(OHLCV_COLUMNS, start=1):
        frame[name] = raw.iloc[:, position].to_numpy()
    frame[CLOSE_TIME_COLUMN] = epoch_to_utc(close_ms, unit)
    return KlineBatch(source=source, frame=frame, row_names=tuple(row_names))


def _rows_frame(rows: Sequence[Sequence[object]], row_names: Sequence[str]) -> pd.DataFrame:
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) != len(KLINE_FIELDS):
            size = len(row) if isinstance(row, list | tuple) else type(row).__name__
            raise CandleValidationError(
                f"{row_names[i]}: a kline has {len(KLINE_FIELDS)} fields, got {size}"
            )
    return pd.DataFrame(list(rows), columns=list(KLINE_FIELDS), dtype=object)


def _integer_column(
    raw: pd.DataFrame, position: int, what: str, row_names: Sequence[str]
) -> np.ndarray:
    column = raw.iloc[:, position]
    parsed = pd.to_numeric(column, errors="coerce")
    values = parsed.to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise CandleValidationError(
            f"{row_names[i]}: {what} must be a whole number of epoch units, got {column.iloc[i]!r}"
        )
    return pd.to_numeric(column).to_numpy(dtype="int64")


def timestamp_unit(open_times: np.ndarray, row_names: Sequence[str], source: str) -> str:
    """``ms`` or ``us``: the unit of one file's epoch times, detected from their size.

    Raises:
        CandleValidationError: the file mixes the two units (naming a row of each).
    """
    micro = open_times > MICROSECOND_THRESHOLD
    if micro.all():
        return "us"
    if not micro.any():
        return "ms"
    first_ms, first_us = int(np.argmax(~micro)), int(np.argmax(micro))
    raise CandleValidationError(
        f"{source}: mixes millisecond and microsecond timestamps ({row_names[first_ms]} is in "
        f"ms, {row_names[first_us]} in us); refusing the file"
    )
