"""The candle contract: column names, dtypes and the validation every consumer applies.

Training data, backtest data and request windows all pass through :func:`validate_candles`,
so a rule is written once and fails with the same message wherever it bites.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
"""Numeric columns of a candle frame, in this order (the fast path stacks them so)."""

TIMESTAMP_COLUMN = "timestamp"
"""Open time of the candle, tz-aware UTC."""

BAR_INTERVAL = pd.Timedelta(hours=1)
"""The model is trained on hourly bars; windows must be one interval apart."""


class CandleValidationError(ValueError):
    """Bad candle data. The message names the row (or field) and the rule broken."""


@dataclass(frozen=True)
class Gap:
    """A hole in the series: ``missing_bars`` bars absent between ``after`` and ``before``."""

    after: pd.Timestamp
    before: pd.Timestamp
    missing_bars: int


def parse_timestamps(values: pd.Series, *, what: str = "timestamp") -> pd.Series:
    """Parse ISO 8601 strings with an explicit offset, or integer epoch milliseconds, to UTC.

    Naive timestamps are rejected: a candle's hour must not depend on the reader's time zone.
    """
    if pd.api.types.is_integer_dtype(values.dtype):
        return pd.Series(pd.to_datetime(values, unit="ms", utc=True), index=values.index)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        raise CandleValidationError(f"{what}: naive timestamps are not accepted; give a UTC offset")
    text = values.astype("string")
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise CandleValidationError(f"row {i}: {what} {text.iloc[i]!r} is not ISO 8601")
    has_offset = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
    if not bool(has_offset.all()):
        i = int(np.argmax(~has_offset.to_numpy()))
        raise CandleValidationError(
            f"row {i}: {what} {text.iloc[i]!r} has no UTC offset (naive timestamps are rejected)"
        )
    return parsed


def infer_interval(timestamps: pd.Series) -> pd.Timedelta:
    """The bar interval of a series: its most common step between consecutive timestamps.

    The most common step, not the smallest: one stray off-grid timestamp must fail validation
    against the real interval, not redefine it.
    """
    steps = pd.Series(timestamps).diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    if steps.empty:
        raise CandleValidationError("need at least two distinct timestamps to infer the interval")
    counts = steps.value_counts()
    return pd.Timedelta(counts.index[counts.to_numpy() == counts.max()].min())


def find_gaps(timestamps: pd.Series, interval: pd.Timedelta = BAR_INTERVAL) -> list[Gap]:
    """Return every place where consecutive timestamps are more than one ``interval`` apart."""
    ts = pd.Series(timestamps).reset_index(drop=True)
    step = ts.diff()
    where = np.flatnonzero((step > interval).to_numpy())
    return [
        Gap(
            after=ts.iloc[i - 1],
            before=ts.iloc[i],
            missing_bars=int(step.iloc[i] / interval) - 1,
        )
        for i in where
    ]


def validate_candles(
    frame: pd.DataFrame,
    *,
    interval: pd.Timedelta | None = BAR_INTERVAL,
    allow_gaps: bool = False,
    row_offset: int = 0,
    row_label: str = "row",
) -> pd.DataFrame:
    """Check a candle frame against the contract and return it in canonical form.

    Canonical form: columns ``timestamp, open, high, low, close, volume`` (timestamp tz-aware
    UTC, the rest float64), a fresh RangeIndex, nothing else. Nothing is repaired silently:
    the first violation raises :class:`CandleValidationError` naming the row and the rule.

    Args:
        frame: candles, oldest first.
        interval: expected spacing of the bars; ``None`` skips the regularity check.
        allow_gaps: when True, spacing may be a multiple of ``interval`` (gaps are left for
            :func:`find_gaps` to report); otherwise any gap is an error naming the first gap.
        row_offset: added to row numbers in messages (e.g. the file line of the first row).
        row_label: what a row is called in messages (``row``, ``candles``...).
    """
    missing = [c for c in (TIMESTAMP_COLUMN, *OHLCV_COLUMNS) if c not in frame.columns]
    if missing:
        raise CandleValidationError(f"missing required column(s): {', '.join(missing)}")
    if len(frame) == 0:
        raise CandleValidationError("no candles")

    def where(i: int) -> str:
        return f"{row_label} {int(i) + row_offset}"

    ts = frame[TIMESTAMP_COLUMN]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise CandleValidationError(
            "timestamp must be timezone-aware UTC (naive timestamps are ambiguous)"
        )
    ts = ts.dt.tz_convert("UTC").reset_index(drop=True)
    if ts.isna().any():
        raise CandleValidationError(
            f"{where(int(np.argmax(ts.isna().to_numpy())))}: timestamp is missing"
        )

    out = pd.DataFrame({TIMESTAMP_COLUMN: ts})
    for col in OHLCV_COLUMNS:
        values = pd.to_numeric(frame[col].reset_index(drop=True), errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))
        if bad.any():
            i = int(np.argmax(bad))
            raise CandleValidationError(
                f"{where(i)}: {col} must be a finite number, got {frame[col].iloc[i]!r}"
            )
        out[col] = values.to_numpy(dtype="float64")

    for col in ("open", "high", "low", "close"):
        bad = out[col].to_numpy() <= 0
        if bad.any():
            i = int(np.argmax(bad))
            raise CandleValidationError(f"{where(i)}: {col} must be > 0, got {out[col].iloc[i]}")
    bad = out["volume"].to_numpy() < 0
    if bad.any():
        i = int(np.argmax(bad))
        raise CandleValidationError(f"{where(i)}: volume must be >= 0, got {out['volume'].iloc[i]}")

    o, h, low, c = (out[k].to_numpy() for k in ("open", "high", "low", "close"))
    bad = h < low
    if bad.any():
        i = int(np.argmax(bad))
        raise CandleValidationError(f"{where(i)}: high ({h[i]}) must be >= low ({low[i]})")
    bad = low > np.minimum(o, c)
    if bad.any():
        i = int(np.argmax(bad))
        raise CandleValidationError(
            f"{where(i)}: low ({low[i]}) must be <= min(open, close) ({min(o[i], c[i])})"
        )
    bad = h < np.maximum(o, c)
    if bad.any():
        i = int(np.argmax(bad))
        raise CandleValidationError(
            f"{where(i)}: high ({h[i]}) must be >= max(open, close) ({max(o[i], c[i])})"
        )

    step = ts.diff().iloc[1:]
    bad = (step <= pd.Timedelta(0)).to_numpy()
    if bad.any():
        i = int(np.argmax(bad)) + 1
        rule = "duplicate timestamp" if step.iloc[i - 1] == pd.Timedelta(0) else "out of order"
        raise CandleValidationError(
            f"{where(i)}: timestamps must be strictly increasing ({rule}: {ts.iloc[i]} "
            f"after {ts.iloc[i - 1]})"
        )
    if interval is not None and len(ts) > 1:
        off_grid = (step % interval != pd.Timedelta(0)).to_numpy()
        if off_grid.any():
            i = int(np.argmax(off_grid)) + 1
            raise CandleValidationError(
                f"{where(i)}: timestamps must be {interval} apart, got {step.iloc[i - 1]} "
                f"between {ts.iloc[i - 1]} and {ts.iloc[i]}"
            )
        if not allow_gaps:
            gap = (step > interval).to_numpy()
            if gap.any():
                i = int(np.argmax(gap)) + 1
                raise CandleValidationError(
                    f"{where(i)}: gap in the candles: {ts.iloc[i - 1]} is followed by "
                    f"{ts.iloc[i]} ({int(step.iloc[i - 1] / interval) - 1} missing bar(s))"
                )
    return out
