"""Features and labels over candle frames and window batches (re-exported by :mod:`features`)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from features._contract import DEFAULT_LABEL_HORIZON, LABEL_NAME, WARMUP_BARS
from features._fast import window_features
from features.candles import (
    BAR_INTERVAL,
    OHLCV_COLUMNS,
    TIMESTAMP_COLUMN,
    CandleValidationError,
    infer_interval,
)
from features.indicators import FEATURE_NAMES, indicator_frame


def compute_features(candles: pd.DataFrame, *, warmup_bars: int = WARMUP_BARS) -> pd.DataFrame:
    """Features for each row of a gap-free candle frame that has ``warmup_bars`` rows before it.

    Args:
        candles: oldest first, validated (:func:`features.candles.validate_candles`), no gaps.
        warmup_bars: leading rows to drop; the default is the contract value.

    Returns:
        Frame indexed by the candle open ``timestamp``, columns :data:`FEATURE_NAMES` in order,
        ``len(candles) - warmup_bars`` rows (empty if the frame is shorter).

    Raises:
        CandleValidationError: a warmed-up row still has a missing or infinite value.
    """
    if len(candles) <= warmup_bars:
        empty = pd.DatetimeIndex([], tz="UTC", name=TIMESTAMP_COLUMN)
        return pd.DataFrame(columns=list(FEATURE_NAMES), index=empty, dtype="float64")
    frame = indicator_frame(candles.reset_index(drop=True))
    frame.index = pd.DatetimeIndex(candles[TIMESTAMP_COLUMN], name=TIMESTAMP_COLUMN)
    frame = frame.iloc[warmup_bars:]
    values = frame.to_numpy()
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise CandleValidationError(
            f"feature {FEATURE_NAMES[col]} is not finite at {frame.index[row]} after the warm-up"
        )
    return frame


def _interval_of(candles: pd.DataFrame, interval: pd.Timedelta | None) -> pd.Timedelta:
    if interval is not None:
        return pd.Timedelta(interval)
    return infer_interval(candles[TIMESTAMP_COLUMN]) if len(candles) > 1 else BAR_INTERVAL


def contiguous_segments(
    candles: pd.DataFrame, *, max_gap_bars: int = 0, interval: pd.Timedelta | None = None
) -> list[pd.DataFrame]:
    """Split a candle frame at its gaps into pieces (in order).

    Args:
        candles: validated candles, oldest first.
        max_gap_bars: holes of at most this many missing bars do not split (a market's scheduled
            closures, e.g. FX weekends: indicators then run over trading bars, as FX charts do).
        interval: the bar interval (default: inferred, :func:`features.candles.infer_interval`).
    """
    step = _interval_of(candles, interval)
    missing = candles[TIMESTAMP_COLUMN].diff() / step - 1
    segment_id = (missing > max_gap_bars).cumsum()
    return [piece for _, piece in candles.groupby(segment_id.to_numpy(), sort=True)]


def compute_features_segmented(
    candles: pd.DataFrame,
    *,
    warmup_bars: int = WARMUP_BARS,
    max_gap_bars: int = 0,
    interval: pd.Timedelta | None = None,
) -> pd.DataFrame:
    """:func:`compute_features` over data with gaps: each gap-free segment warms up on its own.

    By default indicators never run across a hole in the data, so a feature never mixes bars
    further apart in time than its definition says; ``max_gap_bars`` bridges scheduled closures
    (see :func:`contiguous_segments`).
    """
    segments = contiguous_segments(candles, max_gap_bars=max_gap_bars, interval=interval)
    pieces = [compute_features(seg, warmup_bars=warmup_bars) for seg in segments]
    pieces = [piece for piece in pieces if len(piece)]
    if not pieces:
        return pd.DataFrame(columns=list(FEATURE_NAMES), index=pd.DatetimeIndex([], tz="UTC"))
    return pd.concat(pieces)


def make_labels(
    candles: pd.DataFrame,
    horizon: int = DEFAULT_LABEL_HORIZON,
    *,
    interval: pd.Timedelta | None = None,
) -> pd.Series:
    """Direction target: 1.0 if the close ``horizon`` bars later is above this bar's close, else 0.

    A tie counts as not up. The last ``horizon`` rows, and rows whose target bar lies across a
    gap (not exactly ``horizon`` intervals later), are NaN: no label is invented. ``interval``
    defaults to the candles' own (inferred).
    Indexed by the candle open ``timestamp``.
    """
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    close = candles["close"].to_numpy(dtype="float64")
    ts = candles[TIMESTAMP_COLUMN].reset_index(drop=True)
    future_close = pd.Series(close).shift(-horizon)
    future_ts = ts.shift(-horizon)
    exact = (future_ts - ts) == horizon * _interval_of(candles, interval)
    label = (future_close > close).astype("float64").where(exact & future_close.notna())
    label.index = pd.DatetimeIndex(ts, name=TIMESTAMP_COLUMN)
    label.name = LABEL_NAME
    return label


def compute_window_features(
    windows: np.ndarray, *, engine: Literal["fast", "ta"] = "fast", check_finite: bool = True
) -> np.ndarray:
    """The feature row of the last candle of each window, for a batch of equal-length windows.

    Args:
        windows: float array ``(n_windows, n_bars, 5)`` with columns ``open, high, low, close,
            volume`` (:data:`OHLCV_COLUMNS`), oldest bar first, ``n_bars > WARMUP_BARS``.
            Candles must already be validated; timestamps play no part in the math.
        engine: ``"fast"`` computes the whole batch at once in NumPy (:mod:`features._fast`,
            the same floating-point operations as ``ta``, proven equal by
            ``tests/unit/test_fast_features.py``); ``"ta"`` runs the reference,
            :func:`features.indicators.indicator_frame`, window by window.
        check_finite: raise if a feature is not finite (default); ``False`` returns it as it
            came out (NaN or inf in the column of the feature that failed) for the caller to
            report, as the service does.

    Returns:
        ``(n_windows, len(FEATURE_NAMES))`` float64, row ``i`` equal to the last row of
        ``compute_features`` on window ``i``.

    Raises:
        CandleValidationError: a window is too short, holds a missing or infinite value, or
            (with ``check_finite``) yields a feature that is not finite.
    """
    if engine not in ("fast", "ta"):
        raise ValueError(f"engine must be 'fast' or 'ta', got {engine!r}")
    windows = np.asarray(windows, dtype="float64")
    if windows.ndim != 3 or windows.shape[2] != len(OHLCV_COLUMNS):
        raise ValueError(f"windows must have shape (n, bars, 5), got {windows.shape}")
    if windows.shape[1] <= WARMUP_BARS:
        raise CandleValidationError(
            f"a window needs at least {WARMUP_BARS + 1} candles, got {windows.shape[1]}"
        )
    if not np.isfinite(windows).all():
        i = int(np.argwhere(~np.isfinite(windows))[0, 0])
        raise CandleValidationError(f"window {i} holds a missing or infinite value")
    if engine == "fast":
        out = window_features(windows)
    else:
        out = np.empty((windows.shape[0], len(FEATURE_NAMES)))
        for i, window in enumerate(windows):
            frame = pd.DataFrame(window, columns=list(OHLCV_COLUMNS))
            out[i] = indicator_frame(frame).iloc[-1].to_numpy()
    bad = ~np.isfinite(out)
    if check_finite and bad.any():
        i, col = np.argwhere(bad)[0]
        raise CandleValidationError(f"window {i}: feature {FEATURE_NAMES[col]} is not finite")
    return out
