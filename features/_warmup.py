"""What the warm-up leaves of older history: the shortest window's features vs the whole history's.

A request window needs ``warmup_bars + 1`` candles; the features of its last candle then differ
from those computed over all the history before it only through what the recursions (EMAs,
Wilder averages, pandas' running sums and variance) still remember of the bars cut off. This
module measures that difference at every end point of a candle frame, vectorised with the fast
path (bit-equal to the ``ta`` reference), so the whole bundled data takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features._fast import window_features
from features.candles import OHLCV_COLUMNS, TIMESTAMP_COLUMN
from features.indicators import FEATURE_NAMES, indicator_frame

CHUNK_WINDOWS = 4096
"""Windows per fast-path call (bounds memory: ~40 MB of candles for 241-bar windows)."""


@dataclass(frozen=True)
class HistoryCut:
    """Features at every end point, from the whole history and from the shortest window.

    Attributes:
        full: features of each warmed-up row computed over its whole gap-free segment (``ta``),
            indexed by the candle ``timestamp``; columns :data:`FEATURE_NAMES`.
        cut: the same rows from a window of only ``warmup_bars + 1`` candles ending there.
    """

    full: pd.DataFrame
    cut: pd.DataFrame

    def moves(self) -> pd.DataFrame:
        """``|cut - full|`` in units of each feature's standard deviation over ``full``."""
        return (self.cut - self.full).abs() / self.full.std()


def history_cut(segments: list[pd.DataFrame], *, warmup_bars: int) -> HistoryCut:
    """:class:`HistoryCut` over every row of ``segments`` with ``warmup_bars`` rows before it.

    Args:
        segments: gap-free validated candle frames (:func:`features.contiguous_segments`).
        warmup_bars: history each cut window keeps before its last candle.
    """
    fulls, cuts = [], []
    for segment in segments:
        if len(segment) <= warmup_bars:
            continue
        segment = segment.reset_index(drop=True)
        full = indicator_frame(segment).iloc[warmup_bars:]
        full.index = pd.DatetimeIndex(segment[TIMESTAMP_COLUMN].iloc[warmup_bars:])
        ohlcv = segment[list(OHLCV_COLUMNS)].to_numpy(dtype="float64")
        windows = np.lib.stride_tricks.sliding_window_view(ohlcv, warmup_bars + 1, axis=0)
        windows = windows.transpose(0, 2, 1)  # (end points, bars, 5)
        rows = [
            window_features(windows[start : start + CHUNK_WINDOWS], loops="numpy")
            for start in range(0, len(windows), CHUNK_WINDOWS)
        ]
        fulls.append(full)
        cuts.append(pd.DataFrame(np.concatenate(rows), index=full.index, columns=full.columns))
    if not fulls:
        raise ValueError(f"no gap-free segment longer than {warmup_bars} candles")
    full, cut = pd.concat(fulls), pd.concat(cuts)
    return HistoryCut(full[list(FEATURE_NAMES)], cut[list(FEATURE_NAMES)])
