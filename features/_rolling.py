"""Indicators over a rolling window of bars: Bollinger %B and width, stochastic %K/%D, OBV flow,
MFI, CCI and Williams %R (pandas ``rolling``: Kahan sums, Welford variance, max/min, and the
NumPy bodies of ``rolling.apply``). The fast kernel runs their running sums as one stacked pass.

A market that does not move (exchange downtime: forward-filled flat candles) leaves range-based
oscillators at 0/0. They take a neutral value from that row's own window alone, never filled
from other rows (docs/features.md): stochastic 50, Williams %R -50, %B 0.5, MFI 50, OBV flow 0
and CCI 0 (as TA-Lib).

- Bollinger: https://school.stockcharts.com/doku.php?id=technical_indicators:bollinger_bands
- Stochastic: https://school.stockcharts.com/doku.php?id=technical_indicators:stochastic_oscillator_fast_slow_and_full
- OBV: https://school.stockcharts.com/doku.php?id=technical_indicators:on_balance_volume_obv
- MFI: https://school.stockcharts.com/doku.php?id=technical_indicators:money_flow_index_mfi
- CCI: https://school.stockcharts.com/doku.php?id=technical_indicators:commodity_channel_index_cci
- Williams %R: https://school.stockcharts.com/doku.php?id=technical_indicators:williams_r
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from ta.momentum import StochasticOscillator, WilliamsRIndicator
from ta.trend import CCIIndicator
from ta.volatility import BollingerBands
from ta.volume import MFIIndicator, OnBalanceVolumeIndicator

from features._family import Bars, Family, PriceSeries, flat
from features._replay import (
    all_equal,
    finish_rolling,
    numpy_sum,
    rolling_extreme,
    shifted,
    tail,
    zsqrt,
)

BOLLINGER_WINDOW, BOLLINGER_STD = 20, 2
STOCH_WINDOW, STOCH_SMOOTH = 14, 3
OBV_FLOW_WINDOW = 24
MFI_WINDOW = 14
CCI_WINDOW = 20
WILLIAMS_WINDOW = 14

CCI_CONSTANT = 0.015
"""``ta``'s CCI constant, left at its default by the reference."""


def _reference(series: PriceSeries) -> dict[str, pd.Series]:
    high, low, close, volume = series
    out: dict[str, pd.Series] = {}
    bands = BollingerBands(close, window=BOLLINGER_WINDOW, window_dev=BOLLINGER_STD)
    flat_bands = flat(close, close, BOLLINGER_WINDOW)
    out[f"bb_pband_{BOLLINGER_WINDOW}"] = bands.bollinger_pband().mask(flat_bands, 0.5)
    out[f"bb_wband_{BOLLINGER_WINDOW}"] = bands.bollinger_wband()

    # %D is ta's 3-bar mean of %K, taken after %K's neutral value.
    stoch_k = StochasticOscillator(high, low, close, window=STOCH_WINDOW).stoch()
    stoch_k = stoch_k.mask(flat(high, low, STOCH_WINDOW), 50.0)
    out[f"stoch_k_{STOCH_WINDOW}"] = stoch_k
    out[f"stoch_d_{STOCH_WINDOW}"] = stoch_k.rolling(STOCH_SMOOTH, min_periods=STOCH_SMOOTH).mean()

    # OBV is a running sum whose level depends on where the data starts; its change over a
    # window, per unit of volume traded in that window, does not (net signed volume share).
    obv = OnBalanceVolumeIndicator(close, volume).on_balance_volume()
    traded = volume.rolling(OBV_FLOW_WINDOW, min_periods=OBV_FLOW_WINDOW).sum()
    flow = obv.diff(OBV_FLOW_WINDOW) / traded
    out[f"obv_flow_{OBV_FLOW_WINDOW}"] = flow.where(traded != 0, 0.0).where(traded.notna())

    mfi = MFIIndicator(high, low, close, volume, window=MFI_WINDOW).money_flow_index()
    no_flow = mfi.isna() & (np.arange(len(mfi)) >= MFI_WINDOW)  # no money flow either way: 0/0
    out[f"mfi_{MFI_WINDOW}"] = mfi.mask(no_flow, 50.0)

    # Equal typical prices over the window: CCI's mean deviation is 0 and its numerator is 0
    # (or 0/0 by rounding, depending on the price): 0, as TA-Lib answers.
    cci = CCIIndicator(high, low, close, window=CCI_WINDOW).cci()
    typical = (high + low + close) / 3.0
    out[f"cci_{CCI_WINDOW}"] = cci.mask(flat(typical, typical, CCI_WINDOW), 0.0)

    williams = WilliamsRIndicator(high, low, close, lbp=WILLIAMS_WINDOW).williams_r()
    out[f"williams_r_{WILLIAMS_WINDOW}"] = williams.mask(flat(high, low, WILLIAMS_WINDOW), -50.0)
    return out


def _fast(bars: Bars) -> dict[str, np.ndarray]:
    high, low, close, volume, loops = bars
    typical = (high + low + close) / 3.0
    lowest = rolling_extreme(low, STOCH_WINDOW, highest=False)
    highest = rolling_extreme(high, STOCH_WINDOW, highest=True)
    stoch_k = np.zeros_like(close)  # missing in ta before bar STOCH_WINDOW - 1; see below
    stoch_k[STOCH_WINDOW - 1 :] = np.where(
        highest == lowest,
        50.0,
        100 * (close[STOCH_WINDOW - 1 :] - lowest) / (highest - lowest),
    )
    # One stacked running sum; a missing leading value is given as 0, which leaves pandas'
    # all-zero starting state unchanged, exactly as skipping it does.
    sums = loops.rolling_kahan_sums(
        np.stack([close, typical, volume, stoch_k], axis=1),
        (BOLLINGER_WINDOW, CCI_WINDOW, OBV_FLOW_WINDOW, STOCH_SMOOTH),
    )

    close_window = tail(close, BOLLINGER_WINDOW)
    mavg = finish_rolling(close_window, sums[0], mean=True)
    mstd = zsqrt(loops.rolling_variance(close, BOLLINGER_WINDOW))
    hband = mavg + BOLLINGER_STD * mstd
    lband = mavg - BOLLINGER_STD * mstd
    pband = (close[-1] - lband) / np.where(hband != lband, hband - lband, np.nan)

    signed_volume = np.where(close < shifted(close), -volume, volume)
    obv = np.cumsum(signed_volume, axis=0)  # sequential, as pandas' cumsum
    traded = finish_rolling(tail(volume, OBV_FLOW_WINDOW), sums[2], mean=False)
    flow = (obv[-1] - obv[-1 - OBV_FLOW_WINDOW]) / traded

    # ta's MFI sums each window's flows with NumPy (its rolling.apply); 0/0 gives 50.
    previous = shifted(typical)
    direction = np.where(typical > previous, 1, np.where(typical < previous, -1, 0))
    flows = tail(typical * volume * direction, MFI_WINDOW)
    positive = numpy_sum(np.where(flows >= 0.0, flows, 0.0))
    negative = np.abs(numpy_sum(np.where(flows < 0.0, flows, 0.0)))
    mfi = 100 - (100 / (1 + positive / negative))

    # ta's CCI deviation is np.mean(np.abs(x - np.mean(x))) over each window.
    typical_window = tail(typical, CCI_WINDOW)
    centre = numpy_sum(typical_window) / CCI_WINDOW
    mad = numpy_sum(np.abs(typical_window - centre[:, None])) / CCI_WINDOW
    typical_mean = finish_rolling(typical_window, sums[1], mean=True)
    cci = (typical[-1] - typical_mean) / (CCI_CONSTANT * mad)

    highest_w = high[-WILLIAMS_WINDOW:].max(axis=0)
    lowest_w = low[-WILLIAMS_WINDOW:].min(axis=0)
    williams = -100 * (highest_w - close[-1]) / (highest_w - lowest_w)
    return {
        f"bb_pband_{BOLLINGER_WINDOW}": np.where(all_equal(close_window), 0.5, pband),
        f"bb_wband_{BOLLINGER_WINDOW}": ((hband - lband) / mavg) * 100,
        f"stoch_k_{STOCH_WINDOW}": stoch_k[-1],
        f"stoch_d_{STOCH_WINDOW}": finish_rolling(tail(stoch_k, STOCH_SMOOTH), sums[3], mean=True),
        f"obv_flow_{OBV_FLOW_WINDOW}": np.where(traded != 0, flow, 0.0),
        f"mfi_{MFI_WINDOW}": np.where(np.isnan(mfi), 50.0, mfi),
        f"cci_{CCI_WINDOW}": np.where(all_equal(typical_window), 0.0, cci),
        f"williams_r_{WILLIAMS_WINDOW}": np.where(highest_w == lowest_w, -50.0, williams),
    }


ROLLING = Family(
    min_bars=max(BOLLINGER_WINDOW, CCI_WINDOW, OBV_FLOW_WINDOW + 1, MFI_WINDOW + 1),
    reference=_reference,
    fast=_fast,
)
