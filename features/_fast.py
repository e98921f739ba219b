"""Batched fast path: the last row of :func:`features.indicators.indicator_frame` for many windows.

The same features as :mod:`features.indicators` (which stays the reference), computed with NumPy
for a whole batch at once: series are laid out ``(bars, windows)``, each family's fast kernel
(:data:`features.indicators.FAMILIES`) steps its recursions over the bars and only the last row
is produced. The kernels replay pandas' and ``ta``'s floating-point operations in the same order
(:mod:`features._replay`), so the two agree to the last bit on real candles, flat (downtime)
stretches included.

The recursions run in one of two loop flavours with the same bits (:class:`features._replay.Loops`):
compiled scalar loops, one window at a time, up to :data:`SCALAR_LOOPS_MAX_WINDOWS` windows (a
runner's adaptive batches are far smaller), NumPy vector operations across windows above.

``tests/unit/test_fast_features.py`` proves the agreement against ``ta`` on the bundled candles, on
both loop flavours, and their bit-for-bit equality.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from features._family import Bars
from features._replay import LOOPS
from features.candles import OHLCV_COLUMNS
from features.indicators import FAMILIES, FEATURE_NAMES

MIN_BARS = max(family.min_bars for family in FAMILIES)
"""Fewest bars for which every feature of the last bar is defined (the 50-bar EMA decides)."""

SCALAR_LOOPS_MAX_WINDOWS = 1024
"""Batches up to this many windows step through the bars in compiled scalar loops, bigger ones in
NumPy (measured: ``benchmarks/bench_features.py``, docs/BENCHMARKS.md)."""

Loops = Literal["numpy", "scalar"]


def window_features(windows: np.ndarray, *, loops: Loops | None = None) -> np.ndarray:
    """Feature row of the last candle of each window, vectorised across windows.

    Args:
        windows: float ``(n_windows, n_bars, 5)``, columns open, high, low, close, volume,
            oldest bar first, ``n_bars >= MIN_BARS``. Validating candles is the caller's job.
        loops: how the recursions step through the bars (the same bits either way); default
            ``scalar`` up to :data:`SCALAR_LOOPS_MAX_WINDOWS` windows, else ``numpy``.

    Returns:
        ``(n_windows, len(FEATURE_NAMES))`` float64 in :data:`FEATURE_NAMES` order, unchecked
        for finiteness (as the reference, a value out of float64's range gives NaN or inf).
    """
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 3 or windows.shape[2] != len(OHLCV_COLUMNS):
        raise ValueError(f"windows must have shape (n, bars, 5), got {windows.shape}")
    if windows.shape[1] < MIN_BARS:
        raise ValueError(f"the fast path needs at least {MIN_BARS} bars, got {windows.shape[1]}")
    if loops is None:
        loops = "scalar" if windows.shape[0] <= SCALAR_LOOPS_MAX_WINDOWS else "numpy"
    if loops not in LOOPS:
        raise ValueError(f"loops must be 'numpy' or 'scalar', got {loops!r}")
    _, high, low, close, volume = np.ascontiguousarray(windows.transpose(2, 1, 0))
    bars = Bars(high, low, close, volume, LOOPS[loops])
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for family in FAMILIES:
            out.update(family.fast(bars))
    return np.stack([out[name] for name in FEATURE_NAMES], axis=1)


def compile_fast_path() -> None:
    """Compile the scalar loops' kernels now rather than at the first batch.

    Numba compiles a kernel at its first call: ~2-3 s for all of them, or milliseconds when
    its on-disk cache holds them. A server calls this while it loads, so its first request does
    not pay for it. A synthetic random walk suffices: what is compiled depends on the arrays'
    types and layouts, which are the same for every window.
    """
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, MIN_BARS)))
    spread = close * rng.uniform(0.001, 0.01, MIN_BARS)
    window = np.stack(
        [close, close + spread, close - spread, close, rng.uniform(1.0, 10.0, MIN_BARS)], axis=1
    )
    window_features(window[np.newaxis], loops="scalar")
