"""Returns over 1, 3, 6, 12 and 24 bars (``ta``'s rate of change / 100).

ROC: https://school.stockcharts.com/doku.php?id=technical_indicators:rate_of_change_roc_and_momentum
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from ta.momentum import ROCIndicator

from features._family import Bars, Family, PriceSeries

RETURN_HORIZONS: tuple[int, ...] = (1, 3, 6, 12, 24)


def _reference(series: PriceSeries) -> dict[str, pd.Series]:
    return {f"ret_{h}": ROCIndicator(series.close, window=h).roc() / 100.0 for h in RETURN_HORIZONS}


def _fast(bars: Bars) -> dict[str, np.ndarray]:
    """``ta`` ROC / 100: ``((c - c[-h]) / c[-h]) * 100 / 100``."""
    close = bars.close
    return {
        f"ret_{h}": (close[-1] - close[-1 - h]) / close[-1 - h] * 100 / 100.0
        for h in RETURN_HORIZONS
    }


RETURNS = Family(
    min_bars=max(RETURN_HORIZONS) + 1,
    reference=_reference,
    fast=_fast,
)
