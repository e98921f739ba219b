"""Indicator features computed with the ``ta`` library (the reference implementation).

Every feature is scale-free (a ratio, a bounded oscillator or a return), so a model trained
on 2018 prices can read 2022 prices. Each one is causal: row ``t`` uses candles ``<= t`` only;
``fillna`` is never used and warm-up rows are dropped by :func:`features.compute_features`.

References (definitions used by ``ta``):
- ROC: https://school.stockcharts.com/doku.php?id=technical_indicators:rate_of_change_roc_and_momentum
- RSI: https://school.stockcharts.com/doku.php?id=technical_indicators:relative_strength_index_rsi
- MACD: https://school.stockcharts.com/doku.php?id=technical_indicators:moving_average_convergence_divergence_macd
- Bollinger: https://school.stockcharts.com/doku.php?id=technical_indicators:bollinger_bands
- ATR: https://school.stockcharts.com/doku.php?id=technical_indicators:average_true_range_atr
- ADX: https://school.stockcharts.com/doku.php?id=technical_indicators:average_directional_index_adx
- Stochastic: https://school.stockcharts.com/doku.php?id=technical_indicators:stochastic_oscillator_fast_slow_and_full
- OBV: https://school.stockcharts.com/doku.php?id=technical_indicators:on_balance_volume_obv
- MFI: https://school.stockcharts.com/doku.php?id=technical_indicators:money_flow_index_mfi
- CCI: https://school.stockcharts.com/doku.php?id=technical_indicators:commodity_channel_index_cci
- Williams %R: https://school.stockcharts.com/doku.php?id=technical_indicators:williams_r
- EMA: https://school.stockcharts.com/doku.php?id=technical_indicators:moving_averages
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from ta.momentum import ROCIndicator, RSIIndicator, StochasticOscillator, WilliamsRIndicator
from ta.trend import MACD, ADXIndicator, CCIIndicator, EMAIndicator
from ta.volatility import AverageTrueRange, BollingerBands
from ta.volume import MFIIndicator, OnBalanceVolumeIndicator

RETURN_HORIZONS: tuple[int, ...] = (1, 3, 6, 12, 24)
RSI_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BOLLINGER_WINDOW, BOLLINGER_STD = 20, 2
ATR_WINDOW = 14
ADX_WINDOW = 14
STOCH_WINDOW, STOCH_SMOOTH = 14, 3
OBV_FLOW_WINDOW = 24
MFI_WINDOW = 14
CCI_WINDOW = 20
WILLIAMS_WINDOW = 14
EMA_WINDOWS: tuple[int, ...] = (12, 26, 50)

FEATURE_NAMES: tuple[str, ...] = (
    *(f"ret_{h}" for h in RETURN_HORIZONS),
    f"rsi_{RSI_WINDOW}",
    "macd_line_norm",
    "macd_signal_norm",
    "macd_diff_norm",
    f"bb_pband_{BOLLINGER_WINDOW}",
    f"bb_wband_{BOLLINGER_WINDOW}",
    f"atr_norm_{ATR_WINDOW}",
    f"adx_{ADX_WINDOW}",
    f"adx_pos_{ADX_WINDOW}",
    f"adx_neg_{ADX_WINDOW}",
    f"stoch_k_{STOCH_WINDOW}",
    f"stoch_d_{STOCH_WINDOW}",
    f"obv_flow_{OBV_FLOW_WINDOW}",
    f"mfi_{MFI_WINDOW}",
    f"cci_{CCI_WINDOW}",
    f"williams_r_{WILLIAMS_WINDOW}",
    *(f"ema_dist_{w}" for w in EMA_WINDOWS),
)
"""Ordered feature names: the model's input contract."""


def _adx(high: pd.Series, low: pd.Series, close: pd.Series) -> pd.DataFrame:
    """ADX, +DI and -DI from ``ta``; its warm-up rows (written as 0) are marked missing."""
    adx = ADXIndicator(high, low, close, window=ADX_WINDOW)
    frame = pd.DataFrame(
        {
            f"adx_{ADX_WINDOW}": adx.adx(),
            f"adx_pos_{ADX_WINDOW}": adx.adx_pos(),
            f"adx_neg_{ADX_WINDOW}": adx.adx_neg(),
        },
        index=close.index,
    )
    frame.iloc[: 2 * ADX_WINDOW - 1] = np.nan
    return frame


def _flat(high: pd.Series, low: pd.Series, window: int) -> pd.Series:
    """True where the highest high equals the lowest low over a full ``window`` (no range)."""
    hh = high.rolling(window, min_periods=window).max()
    ll = low.rolling(window, min_periods=window).min()
    return (hh == ll).fillna(False).astype(bool)


def indicator_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """All features for every row of a gap-free candle frame, warm-up rows included (NaN or raw).

    Args:
        candles: validated candles (see :func:`features.candles.validate_candles`).

    Returns:
        A frame with the same index as ``candles`` and the columns of :data:`FEATURE_NAMES`.
    """
    high = candles["high"].astype("float64")
    low = candles["low"].astype("float64")
    close = candles["close"].astype("float64")
    volume = candles["volume"].astype("float64")

    out: dict[str, pd.Series] = {}
    for h in RETURN_HORIZONS:
        out[f"ret_{h}"] = ROCIndicator(close, window=h).roc() / 100.0
    out[f"rsi_{RSI_WINDOW}"] = RSIIndicator(close, window=RSI_WINDOW).rsi()

    macd = MACD(close, window_slow=MACD_SLOW, window_fast=MACD_FAST, window_sign=MACD_SIGNAL)
    out["macd_line_norm"] = macd.macd() / close
    out["macd_signal_norm"] = macd.macd_signal() / close
    out["macd_diff_norm"] = macd.macd_diff() / close

    bands = BollingerBands(close, window=BOLLINGER_WINDOW, window_dev=BOLLINGER_STD)
    flat_bands = _flat(close, close, BOLLINGER_WINDOW)
    out[f"bb_pband_{BOLLINGER_WINDOW}"] = bands.bollinger_pband().mask(flat_bands, 0.5)
    out[f"bb_wband_{BOLLINGER_WINDOW}"] = bands.bollinger_wband()

    atr = AverageTrueRange(high, low, close, window=ATR_WINDOW).average_true_range()
    atr = atr.where(np.arange(len(atr)) >= ATR_WINDOW - 1)  # ta fills warm-up with 0
    out[f"atr_norm_{ATR_WINDOW}"] = atr / close

    adx = _adx(high, low, close)
    for name in adx.columns:
        out[name] = adx[name]

    # A market that does not move (exchange downtime: forward-filled flat candles) leaves
    # range-based oscillators at 0/0. They are set to their neutral value from that row alone,
    # never filled from other rows. %D is ta's 3-bar mean of %K, taken after that.
    stoch_k = StochasticOscillator(high, low, close, window=STOCH_WINDOW).stoch()
    flat_stoch = _flat(high, low, STOCH_WINDOW)
    stoch_k = stoch_k.mask(flat_stoch, 50.0)
    out[f"stoch_k_{STOCH_WINDOW}"] = stoch_k
    out[f"stoch_d_{STOCH_WINDOW}"] = stoch_k.rolling(STOCH_SMOOTH, min_periods=STOCH_SMOOTH).mean()

    # OBV is a running sum whose level depends on where the data starts; its change over a
    # window, per unit of volume traded in that window, does not (net signed volume share).
    obv = OnBalanceVolumeIndicator(close, volume).on_balance_volume()
    traded = volume.rolling(OBV_FLOW_WINDOW, min_periods=OBV_FLOW_WINDOW).sum()
    flow = obv.diff(OBV_FLOW_WINDOW) / traded
    out[f"obv_flow_{OBV_FLOW_WINDOW}"] = flow.where(traded != 0, 0.0).where(traded.notna())

    mfi = MFIIndicator(high, low, close, volume, window=MFI_WINDOW).money_flow_index()
    # No money flow either way over the window (0/0): neutral 50.
    no_flow = mfi.isna() & (np.arange(len(mfi)) >= MFI_WINDOW)
    out[f"mfi_{MFI_WINDOW}"] = mfi.mask(no_flow, 50.0)
    # Typical prices all equal over the window: CCI's mean deviation is 0 and its numerator
    # is 0 (or 0/0 by rounding, depending on the price): 0, as TA-Lib answers.
    cci = CCIIndicator(high, low, close, window=CCI_WINDOW).cci()
    typical = (high + low + close) / 3.0
    out[f"cci_{CCI_WINDOW}"] = cci.mask(_flat(typical, typical, CCI_WINDOW), 0.0)
    williams = WilliamsRIndicator(high, low, close, lbp=WILLIAMS_WINDOW).williams_r()
    out[f"williams_r_{WILLIAMS_WINDOW}"] = williams.mask(_flat(high, low, WILLIAMS_WINDOW), -50.0)
    for w in EMA_WINDOWS:
        out[f"ema_dist_{w}"] = close / EMAIndicator(close, window=w).ema_indicator() - 1.0

    frame = pd.DataFrame(out, index=candles.index)
    return frame[list(FEATURE_NAMES)]
