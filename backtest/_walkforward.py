"""Walk-forward: retrain before each test window, trade only the window after it.

The traded bars (from the first traded candle row to the last) are cut into consecutive windows
of ``test_bars`` candles. For a window whose first traded bar is candle row ``a``, the first
signal that matters is formed at the close of row ``a - 1``; the model for the window is fit
only on labelled rows ``t`` whose label is known by then: ``t + label_horizon <= ts[a-1]``
(a label at ``t`` compares the close ``label_horizon`` bars later), i.e. the last
``label_horizon`` rows before the signal bar are dropped as well as everything after. The
window's model then gives P(up) for the signal rows ``a - 1 .. b - 1`` of traded rows ``a .. b``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features import (
    BAR_INTERVAL,
    LABEL_NAME,
    TIMESTAMP_COLUMN,
    compute_features_segmented,
    make_labels,
)

DEFAULT_TEST_BARS = 24 * 90
"""One retrain per 90 days of hourly bars."""
DEFAULT_MIN_TRAIN_ROWS = 24 * 365
"""At least a year of labelled rows before the first window."""


@dataclass(frozen=True)
class Fold:
    """One retrain: what it was fit on and which bars it traded (open times, inclusive)."""

    number: int
    train_rows: int
    train_first: pd.Timestamp
    train_last: pd.Timestamp
    trade_first: pd.Timestamp
    trade_last: pd.Timestamp
    fit_range: tuple[str, str]
    validation_range: tuple[str, str]
    best_epoch: int
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.number,
            "train_rows": self.train_rows,
            "train_range": [self.train_first.isoformat(), self.train_last.isoformat()],
            "fit_range": list(self.fit_range),
            "validation_range": list(self.validation_range),
            "trade_range": [self.trade_first.isoformat(), self.trade_last.isoformat()],
            "best_epoch": self.best_epoch,
            "fit_seconds": round(self.fit_seconds, 3),
        }


@dataclass
class WalkForward:
    """P(up) per candle row (NaN outside the traded windows) and the folds that made it."""

    probability_up: np.ndarray
    first_row: int
    last_row: int
    folds: list[Fold] = field(default_factory=list)
    feature_seconds: float = 0.0
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0


def _first_traded_row(
    stamps: pd.DatetimeIndex, table_index: pd.DatetimeIndex, *, min_train_rows: int, horizon: int
) -> int:
    """The earliest candle row whose window can be fit on ``min_train_rows`` labelled rows."""
    if len(table_index) < min_train_rows:
        raise ValueError(
            f"only {len(table_index)} labelled rows with features, min_train_rows is "
            f"{min_train_rows}"
        )
    enough = table_index[min_train_rows - 1] + horizon * BAR_INTERVAL
    signal_row = int(stamps.searchsorted(enough, side="left"))
    return max(signal_row + 1, 1)


def walk_forward_probabilities(
    candles: pd.DataFrame,
    *,
    fit: Callable[[pd.DataFrame, pd.Series], Any],
    label_horizon: int,
    test_bars: int = DEFAULT_TEST_BARS,
    min_train_rows: int = DEFAULT_MIN_TRAIN_ROWS,
    max_train_rows: int | None = None,
    first_row: int | None = None,
    last_row: int | None = None,
    progress: bool = False,
) -> WalkForward:
    """Out-of-sample P(up) for the candle rows ``first_row .. last_row`` by walk-forward.

    Args:
        candles: validated candle frame (RangeIndex, gaps allowed).
        fit: ``(features, labels) -> FitResult`` (e.g. ``training.train.fit_direction_model``
            with a config bound); it sees only the rows allowed for the window.
        label_horizon: bars ahead the labels look (the model's ``label_horizon``).
        test_bars: traded candles per window (one retrain each).
        min_train_rows: labelled rows the first window needs (sets the default first row).
        max_train_rows: ``None`` for an expanding window, else a sliding one of that many rows.
        first_row, last_row: traded candle rows (defaults: as early as ``min_train_rows``
            allows, and the last candle).
        progress: a tqdm bar over the windows.

    Raises:
        ValueError: bad sizes, or a window with fewer than ``min_train_rows`` rows to fit on.
    """
    if test_bars < 1 or min_train_rows < 1 or label_horizon < 1:
        raise ValueError("test_bars, min_train_rows and label_horizon must be >= 1")
    if max_train_rows is not None and max_train_rows < min_train_rows:
        raise ValueError("max_train_rows must be >= min_train_rows")
    started = time.perf_counter()
    features = compute_features_segmented(candles)
    labels = make_labels(candles, label_horizon)
    table = features.join(labels, how="inner")
    table = table[table[LABEL_NAME].notna()]
    feature_seconds = time.perf_counter() - started

    stamps = pd.DatetimeIndex(candles[TIMESTAMP_COLUMN])
    if first_row is None:
        first_row = _first_traded_row(
            stamps, table.index, min_train_rows=min_train_rows, horizon=label_horizon
        )
    last_row = len(candles) - 1 if last_row is None else last_row
    if not 1 <= first_row <= last_row < len(candles):
        raise ValueError(
            f"not enough candles to walk forward: traded rows {first_row}..{last_row} of "
            f"{len(candles)} candles"
        )

    probability = np.full(len(candles), np.nan)
    result = WalkForward(probability, first_row, last_row, feature_seconds=feature_seconds)
    windows = list(range(first_row, last_row + 1, test_bars))
    for number, window_first in enumerate(
        tqdm(windows, desc="walk-forward windows", unit="window", disable=not progress), start=1
    ):
        window_last = min(window_first + test_bars - 1, last_row)
        signal_bar = stamps[window_first - 1]
        cutoff = signal_bar - label_horizon * BAR_INTERVAL
        train = table.loc[:cutoff]
        if max_train_rows is not None:
            train = train.iloc[-max_train_rows:]
        if len(train) < min_train_rows:
            raise ValueError(
                f"window {number} (from {stamps[window_first]}) has {len(train)} labelled rows "
                f"before {cutoff} to fit on, min_train_rows is {min_train_rows}"
            )
        started = time.perf_counter()
        fitted = fit(train[features.columns], train[LABEL_NAME])
        result.fit_seconds += time.perf_counter() - started

        signal_stamps = stamps[window_first - 1 : window_last]
        rows = features.index.get_indexer(signal_stamps)
        has_features = rows >= 0
        started = time.perf_counter()
        if has_features.any():
            window_probability = fitted.model.predict_proba(features.to_numpy()[rows[has_features]])
            probability[np.arange(window_first - 1, window_last)[has_features]] = window_probability
        result.predict_seconds += time.perf_counter() - started
        result.folds.append(
            Fold(
                number=number,
                train_rows=len(train),
                train_first=train.index[0],
                train_last=train.index[-1],
                trade_first=stamps[window_first],
                trade_last=stamps[window_last],
                fit_range=tuple(fitted.fit_range),
                validation_range=tuple(fitted.validation_range),
                best_epoch=int(fitted.best_epoch),
                fit_seconds=float(fitted.seconds),
            )
        )
    return result
