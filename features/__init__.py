"""The one implementation of feature and label math.

Training, serving, the ``indicators`` API and the backtest all call these functions; nothing
here imports from them. Data flows one way: candles -> features -> (training | service | backtest).

Public API:
    FEATURE_NAMES, WARMUP_BARS, FEATURE_SET_VERSION: the contract a model is trained against.
    compute_features(candles): features for every warmed-up row of a gap-free candle frame.
    compute_features_segmented(candles): the same over data with gaps (per contiguous segment).
    compute_window_features(windows): the last row's features for a batch of windows (batched
        NumPy fast path by default, equal to the ``ta`` reference).
    make_labels(candles, horizon): the direction target, kept apart from the features.
    compile_fast_path(): compile the fast path's kernels ahead of the first batch (servers).
"""

from features._compute import (
    compute_features,
    compute_features_segmented,
    compute_window_features,
    contiguous_segments,
    make_labels,
)
from features._contract import (
    DEFAULT_LABEL_HORIZON,
    FEATURE_SET_VERSION,
    LABEL_NAME,
    WARMUP_BARS,
    WARMUP_TOLERANCE,
)
from features._fast import compile_fast_path
from features.candles import (
    BAR_INTERVAL,
    OHLCV_COLUMNS,
    TIMESTAMP_COLUMN,
    CandleValidationError,
    infer_interval,
    parse_timestamps,
    validate_candles,
)
from features.indicators import FEATURE_NAMES

__all__ = [
    "BAR_INTERVAL",
    "DEFAULT_LABEL_HORIZON",
    "FEATURE_NAMES",
    "FEATURE_SET_VERSION",
    "LABEL_NAME",
    "OHLCV_COLUMNS",
    "TIMESTAMP_COLUMN",
    "WARMUP_BARS",
    "WARMUP_TOLERANCE",
    "CandleValidationError",
    "compile_fast_path",
    "compute_features",
    "compute_features_segmented",
    "compute_window_features",
    "contiguous_segments",
    "infer_interval",
    "make_labels",
    "parse_timestamps",
    "validate_candles",
]
