"""Wilder's averages: ATR over the close, ADX, +DI and -DI (``ta`` 0.11's Python loops).

- ATR: https://school.stockcharts.com/doku.php?id=technical_indicators:average_true_range_atr
- ADX: https://school.stockcharts.com/doku.php?id=technical_indicators:average_directional_index_adx
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from ta.trend import ADXIndicator
from ta.volatility import AverageTrueRange

from features._family import Bars, Family, PriceSeries
from features._replay import numpy_sum

ATR_WINDOW = 14
ADX_WINDOW = 14


def _reference(series: PriceSeries) -> dict[str, pd.Series]:
    high, low, close = series.high, series.low, series.close
    atr = AverageTrueRange(high, low, close, window=ATR_WINDOW).average_true_range()
    atr = atr.where(np.arange(len(atr)) >= ATR_WINDOW - 1)  # ta fills warm-up with 0
    adx = ADXIndicator(high, low, close, window=ADX_WINDOW)
    frame = pd.DataFrame(
        {
            f"adx_{ADX_WINDOW}": adx.adx(),
            f"adx_pos_{ADX_WINDOW}": adx.adx_pos(),
            f"adx_neg_{ADX_WINDOW}": adx.adx_neg(),
        },
        index=close.index,
    )
    frame.iloc[: 2 * ADX_WINDOW - 1] = np.nan  # ta's warm-up rows, written as 0
    return {f"atr_norm_{ATR_WINDOW}": atr / close, **{name: frame[name] for name in frame}}


def _fast(bars: Bars) -> dict[str, np.ndarray]:
    high, low, close, loops = bars.high, bars.low, bars.close, bars.loops
    previous = close[:-1]
    # ATR: true range (bar 0: high - low), seeded with the mean of the first window.
    true_range = np.empty_like(close)
    true_range[0] = high[0] - low[0]
    true_range[1:] = np.maximum(
        np.maximum(high[1:] - low[1:], np.abs(high[1:] - previous)), np.abs(low[1:] - previous)
    )
    atr = numpy_sum(true_range[:ATR_WINDOW].T) / float(ATR_WINDOW)
    atr = loops.wilder_mean(atr, true_range[ATR_WINDOW:], ATR_WINDOW)

    # ADX: range, up move and down move from bar 1, seeded with plain sums of bars 1..n at bar
    # n, then x - x / n + value; DI from their ratios, ADX a Wilder average of DX from bar 2n-1.
    n = ADX_WINDOW
    moves = np.empty((close.shape[0], 3, close.shape[1]))
    moves[0] = np.nan
    moves[1:, 0] = np.maximum(high[1:], previous) - np.minimum(low[1:], previous)
    up = high[1:] - high[:-1]
    down = low[:-1] - low[1:]
    moves[1:, 1] = np.where((up > down) & (up > 0), up, 0.0)
    moves[1:, 2] = np.where((down > up) & (down > 0), down, 0.0)
    seed = numpy_sum(moves[1 : n + 1].transpose(1, 2, 0))
    smoothed = loops.wilder_sums(seed, moves[n + 1 :], n)
    true_range_sum, plus_move, minus_move = smoothed[:, 0], smoothed[:, 1], smoothed[:, 2]
    plus_di = np.where(true_range_sum != 0, 100 * (plus_move / true_range_sum), 0.0)
    minus_di = np.where(true_range_sum != 0, 100 * (minus_move / true_range_sum), 0.0)
    di_sum = plus_di + minus_di
    dx = np.where(di_sum != 0, 100 * np.abs((plus_di - minus_di) / di_sum), 0.0)
    adx = loops.wilder_mean(numpy_sum(dx[:n].T) / n, dx[n:], n)
    return {
        f"atr_norm_{ATR_WINDOW}": atr / close[-1],
        f"adx_{ADX_WINDOW}": adx,
        f"adx_pos_{ADX_WINDOW}": plus_di[-1],
        f"adx_neg_{ADX_WINDOW}": minus_di[-1],
    }


WILDER = Family(
    min_bars=2 * ADX_WINDOW,
    reference=_reference,
    fast=_fast,
)
