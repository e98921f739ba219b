"""What a feature family is: the ``ta`` reference and the fast kernel of the same features.

A family groups the features that share their computation (one stacked EWM pass, one set of
rolling sums, ta's Wilder loops). Each family module holds both implementations next to each
other, so adding or changing a feature is one edit of the reference and one of the fast kernel,
in one file; :data:`features.indicators.FAMILIES` registers the families.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from features._replay import Loops


class PriceSeries(NamedTuple):
    """The reference's input: float64 columns of one gap-free candle frame."""

    high: pd.Series
    low: pd.Series
    close: pd.Series
    volume: pd.Series


class Bars(NamedTuple):
    """The fast kernels' input: ``(bars, windows)`` float64 arrays of a batch of windows, and the
    loop flavour that steps the recursions (:class:`features._replay.Loops`)."""

    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    loops: Loops


@dataclass(frozen=True)
class Family:
    """Features computed together.

    Both functions return a dict keyed by feature name (names of
    :data:`features.indicators.FEATURE_NAMES`; each feature in exactly one family).

    Attributes:
        min_bars: fewest bars for which all of them are defined at the last bar.
        reference: ``ta`` on a whole frame: every row, warm-up rows NaN.
        fast: the same floating-point operations for the last bar of each window only.
    """

    min_bars: int
    reference: Callable[[PriceSeries], dict[str, pd.Series]]
    fast: Callable[[Bars], dict[str, np.ndarray]]


def flat(high: pd.Series, low: pd.Series, window: int) -> pd.Series:
    """True where the highest high equals the lowest low over a full ``window`` (no range)."""
    hh = high.rolling(window, min_periods=window).max()
    ll = low.rolling(window, min_periods=window).min()
    return (hh == ll).fillna(False).astype(bool)
