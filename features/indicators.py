"""Indicator features computed with the ``ta`` library (the reference implementation).

Every feature is scale-free (a ratio, a bounded oscillator or a return), so a model trained
on 2018 prices can read 2022 prices. Each one is causal: row ``t`` uses candles ``<= t`` only;
``fillna`` is never used and warm-up rows are dropped by :func:`features.compute_features`.

The features come in families (:data:`FAMILIES`), one private module each, that hold the ``ta``
reference and the fast path's kernel of the same features side by side (:mod:`features._family`):

- :mod:`features._returns`: returns over 1 to 24 bars.
- :mod:`features._averages`: RSI, MACD, EMA distances (exponential averages of the close).
- :mod:`features._wilder`: ATR, ADX, +DI, -DI (Wilder's averages).
- :mod:`features._rolling`: Bollinger, stochastic, OBV flow, MFI, CCI, Williams %R.

Adding a feature: write it in its family's ``_reference`` and ``_fast`` (or a new family module,
registered in :data:`FAMILIES`), and add its name to :data:`FEATURE_NAMES`.
"""

from __future__ import annotations

import pandas as pd

from features._averages import AVERAGES, EMA_WINDOWS, MACD_FAST, MACD_SIGNAL, MACD_SLOW, RSI_WINDOW
from features._family import Family, PriceSeries
from features._returns import RETURN_HORIZONS, RETURNS
from features._rolling import (
    BOLLINGER_STD,
    BOLLINGER_WINDOW,
    CCI_WINDOW,
    MFI_WINDOW,
    OBV_FLOW_WINDOW,
    ROLLING,
    STOCH_SMOOTH,
    STOCH_WINDOW,
    WILLIAMS_WINDOW,
)
from features._wilder import ADX_WINDOW, ATR_WINDOW, WILDER

__all__ = [
    "ADX_WINDOW",
    "ATR_WINDOW",
    "BOLLINGER_STD",
    "BOLLINGER_WINDOW",
    "CCI_WINDOW",
    "EMA_WINDOWS",
    "FAMILIES",
    "FEATURE_NAMES",
    "MACD_FAST",
    "MACD_SIGNAL",
    "MACD_SLOW",
    "MFI_WINDOW",
    "OBV_FLOW_WINDOW",
    "RETURN_HORIZONS",
    "RSI_WINDOW",
    "STOCH_SMOOTH",
    "STOCH_WINDOW",
    "WILLIAMS_WINDOW",
    "indicator_frame",
]

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

FAMILIES: tuple[Family, ...] = (RETURNS, AVERAGES, WILDER, ROLLING)
"""Every feature family; together they give each of :data:`FEATURE_NAMES` exactly once."""


def indicator_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """All features for every row of a gap-free candle frame, warm-up rows included (NaN or raw).

    Args:
        candles: validated candles (see :func:`features.candles.validate_candles`).

    Returns:
        A frame with the same index as ``candles`` and the columns of :data:`FEATURE_NAMES`.
    """
    series = PriceSeries(*(candles[c].astype("float64") for c in PriceSeries._fields))
    out: dict[str, pd.Series] = {}
    for family in FAMILIES:
        out.update(family.reference(series))
    frame = pd.DataFrame(out, index=candles.index)
    return frame[list(FEATURE_NAMES)]
