"""The contract a model is trained against, besides the feature names: warm-up, version, label."""

from __future__ import annotations

WARMUP_BARS = 240
"""Rows dropped at the start of every series: after this many bars every feature is defined, and
a window of ``WARMUP_BARS + 1`` candles (the shortest the API takes) gives its last candle the
features of the whole history to within :data:`WARMUP_TOLERANCE`. Measured at every end point of
the bundled candles: ``ema_dist_50``, the slowest average, moves by up to 9.6e-4 of its standard
deviation (above 1e-4 at 11 % of end points), every other feature by at most 1.1e-5, P(up) of
the default model by at most 5.7e-6 (docs/features.md; ``tests/unit/test_features.py::
test_warmup_bounds_what_older_history_moves_at_every_end_point``)."""

WARMUP_TOLERANCE = 1e-3
"""Max absolute change of a feature when history older than :data:`WARMUP_BARS` bars is cut
off, in units of that feature's standard deviation over the bundled data."""

FEATURE_SET_VERSION = "1"
"""Stored with each model; bumped whenever a feature's value changes where it was defined.
Extending a feature to rows where it was not finite (and so refused by training and serving)
keeps the version: CCI's 0 on windows of equal typical prices (an outage) left every finite
value of version 1 unchanged, bit for bit (docs/features.md)."""

DEFAULT_LABEL_HORIZON = 1
LABEL_NAME = "label_up"
