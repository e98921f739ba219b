"""P(up) for every candle from a stored model, and the out-of-sample rule for trading it.

Features come from :func:`features.compute_features_segmented` (the one implementation; each
gap-free segment warms up on its own), probabilities from the model's own ``predict_proba``.
Bars without features (the warm-up rows of each segment) get no probability: the engine keeps
the book flat after them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import BAR_INTERVAL, TIMESTAMP_COLUMN, compute_features_segmented


class OutOfSampleError(ValueError):
    """The requested trading period overlaps what the model learned from."""


@dataclass(frozen=True)
class ModelSignals:
    """P(up) per candle (NaN where no features) and how long each step took."""

    probability_up: np.ndarray
    feature_seconds: float
    predict_seconds: float
    feature_rows: int


def predict_all(candles: pd.DataFrame, predict_proba) -> ModelSignals:
    """Compute features over all ``candles`` and P(up) for every warmed-up row.

    Args:
        candles: validated candle frame (RangeIndex, gaps allowed).
        predict_proba: ``(n, n_features) raw features -> (n,) P(up)``, e.g.
            ``DirectionModel.predict_proba``.
    """
    started = time.perf_counter()
    features = compute_features_segmented(candles)
    feature_seconds = time.perf_counter() - started
    started = time.perf_counter()
    probability = np.asarray(predict_proba(features.to_numpy()), dtype="float64")
    predict_seconds = time.perf_counter() - started
    aligned = (
        pd.Series(probability, index=features.index)
        .reindex(pd.DatetimeIndex(candles[TIMESTAMP_COLUMN]))
        .to_numpy()
    )
    return ModelSignals(aligned, feature_seconds, predict_seconds, len(features))


def earliest_out_of_sample_start(train_last: pd.Timestamp, label_horizon: int) -> pd.Timestamp:
    """Open time of the first bar a model fit on rows up to ``train_last`` may trade.

    The last training row's label looked at the close of bar ``train_last + h``. The first
    traded bar ``s`` earns the move from ``s``'s open (the previous close) to its own close,
    so that close must be one the model never saw: ``s >= train_last + (h + 1)`` bars.
    """
    return pd.Timestamp(train_last) + (label_horizon + 1) * BAR_INTERVAL


def check_out_of_sample(
    start: pd.Timestamp, *, train_range: tuple[pd.Timestamp, pd.Timestamp], label_horizon: int
) -> None:
    """Refuse, with the reason, to trade a bar whose return the model was trained on."""
    earliest = earliest_out_of_sample_start(train_range[1], label_horizon)
    if start < earliest:
        raise OutOfSampleError(
            f"refusing to trade from {start.isoformat()}: the model was fit on rows "
            f"{train_range[0].isoformat()} .. {train_range[1].isoformat()} with labels "
            f"{label_horizon} bar(s) ahead, so bars before {earliest.isoformat()} are in its "
            "training period (in-sample); use --start at or after that time"
        )


def parse_range(raw: object, what: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """A ``[first, last]`` metadata range as two UTC timestamps."""
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise ValueError(f"model metadata {what} must be [first, last], got {raw!r}")
    first, last = (pd.Timestamp(v) for v in raw)
    if first.tzinfo is None or last.tzinfo is None:
        raise ValueError(f"model metadata {what} has naive timestamps: {raw!r}")
    return first.tz_convert("UTC"), last.tz_convert("UTC")
