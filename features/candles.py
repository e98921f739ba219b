"""The candle contract: column names, dtypes and the validation every consumer applies.

Training data, backtest data and request windows all pass through :func:`validate_candles`,
so a rule is written once and fails with the same message wherever it bites.
"""

from __future__ import annotations

from collections.abc import Sequence
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


_US_PER_S = 1_000_000
# The canonical forms with every digit written 0 (the offset's sign may also be "-").
_ISO_LAYOUTS = {20: b"0000-00-00T00:00:00Z", 25: b"0000-00-00T00:00:00+00:00"}
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_YEAR_ONE = np.datetime64("0001-01-01T00:00:00", "s")


def _canonical_iso_us(stamps: list[str]) -> np.ndarray | None:
    """Epoch microseconds of ``YYYY-MM-DDTHH:MM:SSZ`` or ``YYYY-MM-DDTHH:MM:SS+HH:MM`` strings
    (all of one of these lengths), decoded with array arithmetic; ``None`` for anything else,
    which :func:`parse_timestamps` then judges (this path accepts nothing it would refuse).

    The layout is checked on the bytes with every digit turned into ``0``; NumPy's strict ISO
    parser then reads the date and time and refuses impossible ones (month 13, 29 February of
    a common year, hour 24, second 60).
    """
    lengths = set(map(len, stamps))
    if len(lengths) != 1 or (width := lengths.pop()) not in _ISO_LAYOUTS:
        return None
    try:
        raw = "".join(stamps).encode("ascii")
    except UnicodeEncodeError:
        return None
    layout = bytearray(raw.translate(_DIGITS_TO_ZERO))
    if width == 25:
        if not set(layout[19::25]) <= {ord("+"), ord("-")}:
            return None
        layout[19::25] = b"+" * len(stamps)
    if layout != _ISO_LAYOUTS[width] * len(stamps):
        return None
    chars = np.frombuffer(raw, dtype=np.uint8).reshape(len(stamps), width)
    try:
        local = np.ascontiguousarray(chars[:, :19]).view("S19").ravel().astype("datetime64[s]")
    except ValueError:
        return None
    if (local < _YEAR_ONE).any():  # year 0000: NumPy reads it, the rules do not
        return None
    seconds = local.astype(np.int64)
    if width == 25:
        offset = (chars[:, (20, 21, 23, 24)].astype(np.int64) - ord("0")) * (10, 1, 10, 1)
        hours, minutes = offset[:, 0] + offset[:, 1], offset[:, 2] + offset[:, 3]
        if not ((hours <= 23) & (minutes <= 59)).all():
            return None
        direction = np.where(chars[:, 19] == ord("+"), 1, -1)
        seconds = seconds - direction * (hours * 3600 + minutes * 60)
    return seconds * _US_PER_S


def timestamps_to_us(stamps: list[str] | list[int], *, what: str = "timestamp") -> np.ndarray:
    """Epoch microseconds (int64) of a window's timestamps: all ISO 8601 strings with an offset,
    or all integer epoch milliseconds, by the rules of :func:`parse_timestamps`.

    The request path: integers and canonical ISO strings (``...Z``, ``...+HH:MM``) are decoded
    with NumPy; any other string goes through :func:`parse_timestamps`, which also words every
    refusal, so both paths accept and refuse the same values.
    """
    if stamps and not isinstance(stamps[0], str):
        return np.asarray(stamps, dtype=np.int64) * 1000
    fast = _canonical_iso_us(stamps)  # type: ignore[arg-type]
    if fast is not None:
        return fast
    parsed = parse_timestamps(pd.Series(stamps, dtype="string"), what=what)
    return parsed.astype("datetime64[us, UTC]").array.asi8


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
    row_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Check a candle frame against the contract and return it in canonical form.

    Canonical form: columns ``timestamp, open, high, low, close, volume`` (timestamp tz-aware
    UTC, the rest float64), a fresh RangeIndex, nothing else. Nothing is repaired silently:
    the first violation raises :class:`CandleValidationError` naming the row and the rule.
    The rules on values are :func:`check_candle_arrays`'s; this wrapper adds the frame-level
    ones (columns present, timestamps tz-aware, numbers parseable).

    Args:
        frame: candles, oldest first.
        interval: expected spacing of the bars; ``None`` skips the regularity check.
        allow_gaps: when True, spacing may be a multiple of ``interval`` (gaps are left for
            :func:`find_gaps` to report); otherwise any gap is an error naming the first gap.
        row_offset: added to row numbers in messages (e.g. the file line of the first row).
        row_label: what a row is called in messages (``row``, ``candles``...).
        row_names: one name per row for messages (e.g. ``BTCUSDT-1h-2024-01.zip line 7``,
            for rows gathered from several files or pages); overrides the two above.
    """
    missing = [c for c in (TIMESTAMP_COLUMN, *OHLCV_COLUMNS) if c not in frame.columns]
    if missing:
        raise CandleValidationError(f"missing required column(s): {', '.join(missing)}")
    if len(frame) == 0:
        raise CandleValidationError("no candles")

    if row_names is not None and len(row_names) != len(frame):
        raise ValueError(f"row_names has {len(row_names)} names for {len(frame)} rows")

    def where(i: int) -> str:
        return _row_name(i, row_label, row_offset, row_names)

    ts = frame[TIMESTAMP_COLUMN]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise CandleValidationError(
            "timestamp must be timezone-aware UTC (naive timestamps are ambiguous)"
        )
    ts = ts.dt.tz_convert("UTC").reset_index(drop=True)
    if ts.isna().any():
        i = int(np.argmax(ts.isna().to_numpy()))
        raise CandleValidationError(f"{where(i)}: timestamp is missing")

    ohlcv = np.empty((len(frame), len(OHLCV_COLUMNS)), dtype="float64")
    for j, col in enumerate(OHLCV_COLUMNS):
        values = pd.to_numeric(frame[col].reset_index(drop=True), errors="coerce")
        ohlcv[:, j] = values.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isfinite(ohlcv[:, j])
        if bad.any():
            i = int(np.argmax(bad))
            raise CandleValidationError(
                f"{where(i)}: {col} must be a finite number, got {frame[col].iloc[i]!r}"
            )
    check_candle_arrays(
        ts.astype("datetime64[us, UTC]").array.asi8,
        ohlcv,
        interval=interval,
        allow_gaps=allow_gaps,
        row_offset=row_offset,
        row_label=row_label,
        row_names=row_names,
    )
    out = pd.DataFrame({TIMESTAMP_COLUMN: ts})
    for j, col in enumerate(OHLCV_COLUMNS):
        out[col] = ohlcv[:, j]
    return out


def _row_name(
    i: int | np.integer, row_label: str, row_offset: int, row_names: Sequence[str] | None
) -> str:
    """How row ``i`` is called in messages: its name if given, else ``<row_label> <i+offset>``."""
    if row_names is not None:
        return str(row_names[int(i)])
    return f"{row_label} {int(i) + row_offset}"


def _stamp(us: int | np.integer) -> pd.Timestamp:
    return pd.Timestamp(int(us), unit="us", tz="UTC")


def check_candle_arrays(
    timestamps_us: np.ndarray,
    ohlcv: np.ndarray,
    *,
    interval: pd.Timedelta | None = BAR_INTERVAL,
    allow_gaps: bool = False,
    row_offset: int = 0,
    row_label: str = "row",
    row_names: Sequence[str] | None = None,
) -> None:
    """The candle rules on arrays: the one rule set, for files (through
    :func:`validate_candles`), request windows and the backtest, without pandas.

    Args:
        timestamps_us: ``(n,)`` int64 UTC open times in microseconds since the epoch (the
            resolution pandas parses to; it spans years 1 to 9999).
        ohlcv: ``(n, 5)`` float64 in :data:`OHLCV_COLUMNS` order.
        interval, allow_gaps, row_offset, row_label, row_names: as in
            :func:`validate_candles`.

    Raises:
        CandleValidationError: the first rule broken, naming the row, as ``validate_candles``.
    """

    def where(i: int | np.integer) -> str:
        return _row_name(i, row_label, row_offset, row_names)

    if len(timestamps_us) == 0:
        raise CandleValidationError("no candles")
    finite = np.isfinite(ohlcv)
    if not finite.all():
        j = int(np.argmax(~finite.all(axis=0)))
        i = int(np.argmax(~finite[:, j]))
        raise CandleValidationError(
            f"{where(i)}: {OHLCV_COLUMNS[j]} must be a finite number, got {float(ohlcv[i, j])!r}"
        )
    o, h, low, c, volume = (ohlcv[:, j] for j in range(5))
    for name, values in (("open", o), ("high", h), ("low", low), ("close", c)):
        bad = values <= 0
        if bad.any():
            i = int(np.argmax(bad))
            raise CandleValidationError(f"{where(i)}: {name} must be > 0, got {values[i]}")
    bad = volume < 0
    if bad.any():
        i = int(np.argmax(bad))
        raise CandleValidationError(f"{where(i)}: volume must be >= 0, got {volume[i]}")
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

    ts = np.asarray(timestamps_us, dtype=np.int64)
    step = np.diff(ts)
    bad = step <= 0
    if bad.any():
        i = int(np.argmax(bad)) + 1
        rule = "duplicate timestamp" if step[i - 1] == 0 else "out of order"
        raise CandleValidationError(
            f"{where(i)}: timestamps must be strictly increasing ({rule}: {_stamp(ts[i])} "
            f"after {_stamp(ts[i - 1])})"
        )
    if interval is not None and len(ts) > 1:
        interval_us = pd.Timedelta(interval).value // 1000  # ns to us, without Timedelta math
        off_grid = step % interval_us != 0
        if off_grid.any():
            i = int(np.argmax(off_grid)) + 1
            got = pd.Timedelta(int(step[i - 1]), unit="us")
            raise CandleValidationError(
                f"{where(i)}: timestamps must be {interval} apart, got {got} "
                f"between {_stamp(ts[i - 1])} and {_stamp(ts[i])}"
            )
        if not allow_gaps:
            gap = step > interval_us
            if gap.any():
                i = int(np.argmax(gap)) + 1
                raise CandleValidationError(
                    f"{where(i)}: gap in the candles: {_stamp(ts[i - 1])} is followed by "
                    f"{_stamp(ts[i])} ({int(step[i - 1] // interval_us) - 1} missing bar(s))"
                )
