"""Exponential averages of the close: RSI, MACD (line, signal, histogram) and EMA distances.

All are pandas ``ewm(adjust=False)`` recursions in ``ta``; the fast kernel runs them as one
stacked EWM pass over the close and RSI's gains and losses, then MACD's signal over its line.

- RSI: https://school.stockcharts.com/doku.php?id=technical_indicators:relative_strength_index_rsi
- MACD: https://school.stockcharts.com/doku.php?id=technical_indicators:moving_average_convergence_divergence_macd
- EMA: https://school.stockcharts.com/doku.php?id=technical_indicators:moving_averages
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from ta.momentum import RSIIndicator
from ta.trend import MACD, EMAIndicator

from features._family import Bars, Family, PriceSeries
from features._replay import com_from_alpha, com_from_span, shifted

RSI_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
EMA_WINDOWS: tuple[int, ...] = (12, 26, 50)


def _reference(series: PriceSeries) -> dict[str, pd.Series]:
    close = series.close
    macd = MACD(close, window_slow=MACD_SLOW, window_fast=MACD_FAST, window_sign=MACD_SIGNAL)
    return {
        f"rsi_{RSI_WINDOW}": RSIIndicator(close, window=RSI_WINDOW).rsi(),
        "macd_line_norm": macd.macd() / close,
        "macd_signal_norm": macd.macd_signal() / close,
        "macd_diff_norm": macd.macd_diff() / close,
        **{
            f"ema_dist_{w}": close / EMAIndicator(close, window=w).ema_indicator() - 1.0
            for w in EMA_WINDOWS
        },
    }


def _fast(bars: Bars) -> dict[str, np.ndarray]:
    close = bars.close
    diff = close - shifted(close)
    gains = np.where(diff > 0, diff, 0.0)  # bar 0 too: ta's NaN > 0 is False, so 0.0
    losses = -np.where(diff < 0, diff, 0.0)
    spans = (MACD_FAST, MACD_SLOW, *EMA_WINDOWS)
    coms = [com_from_span(s) for s in spans] + [com_from_alpha(1 / RSI_WINDOW)] * 2
    inputs = np.empty((close.shape[0], len(coms), close.shape[1]))
    inputs[:, : len(spans)] = close[:, None, :]
    inputs[:, -2] = gains
    inputs[:, -1] = losses
    paths = bars.loops.ewm_paths(inputs, coms)

    mean_gain, mean_loss = paths[-1, -2], paths[-1, -1]
    rsi = np.where(mean_loss == 0, 100, 100 - (100 / (1 + mean_gain / mean_loss)))
    macd = paths[:, 0] - paths[:, 1]  # missing before bar MACD_SLOW - 1 in ta
    signal_path = bars.loops.ewm_paths(macd[MACD_SLOW - 1 :, None], [com_from_span(MACD_SIGNAL)])
    signal = signal_path[-1, 0]
    last = close[-1]
    return {
        f"rsi_{RSI_WINDOW}": rsi,
        "macd_line_norm": macd[-1] / last,
        "macd_signal_norm": signal / last,
        "macd_diff_norm": (macd[-1] - signal) / last,
        **{f"ema_dist_{w}": last / paths[-1, 2 + k] - 1.0 for k, w in enumerate(EMA_WINDOWS)},
    }


AVERAGES = Family(
    min_bars=max(*EMA_WINDOWS, MACD_SLOW + MACD_SIGNAL - 1),
    reference=_reference,
    fast=_fast,
)
