"""Batched fast path: the last row of :func:`features.indicators.indicator_frame` for many windows.

The same features as :mod:`features.indicators` (which stays the reference), computed with NumPy
for a whole batch at once: series are laid out ``(bars, windows)``, each recursion steps over the
bars with one vector operation across all windows, and only the last row is produced.

The aim is equality, not closeness. Every step repeats the floating-point operations, in the
same order, of the code the reference runs (``ta`` 0.11 on pandas 3.1 and NumPy 2), so the two
agree to the last bit on real candles, flat (downtime) stretches included:

- ``ewm(adjust=False).mean()`` is pandas' update ``(f * w + a * x) / (f + a)``, with ``a`` taken
  through the centre of mass as pandas does, skipped when ``w == x``, seeded at the first value.
- ``rolling(n).mean()`` and ``.sum()`` are pandas' running Kahan sums (separate add and remove
  compensations, removes first) with its rules for all-equal windows and for the sign.
- ``rolling(n).std(ddof=0)`` is pandas' running Welford variance with Kahan compensation and
  its recompute after catastrophic cancellation. It must be replayed from the window's first
  bar: on a flat stretch it keeps a residue of earlier volatility (``bb_wband_20`` is 4e-6 to
  9e-6, not 0, during the 2018-02-08 downtime, depending on where the window starts), which a
  fresh two-pass variance would not show.
- NumPy reductions that ``ta`` runs per window (``rolling.apply`` bodies, ``Series.sum`` and
  ``mean`` seeds) are the same NumPy reductions over contiguous ``(windows, n)`` rows.
- ``ta``'s Python loops (ATR, ADX) are replayed with their seeds and update expressions.

Each recursion over the bars exists twice, with the same operations in the same order: as NumPy
vector operations across all windows (one call per bar and operation, ~1 us of call overhead
each, whatever the batch) and as plain Python float arithmetic, one window at a time (IEEE
double like NumPy's, ~50 ns an operation, linear in the batch). Python loops win below
:data:`PYTHON_LOOPS_MAX_WINDOWS` windows (a runner's adaptive batches are usually that small);
both give the same bits.

``tests/test_fast_features.py`` proves the agreement against ``ta`` on the bundled candles, on
both loop flavours, and their bit-for-bit equality.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from features.candles import OHLCV_COLUMNS
from features.indicators import (
    ADX_WINDOW,
    ATR_WINDOW,
    BOLLINGER_STD,
    BOLLINGER_WINDOW,
    CCI_WINDOW,
    EMA_WINDOWS,
    FEATURE_NAMES,
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    MFI_WINDOW,
    OBV_FLOW_WINDOW,
    RETURN_HORIZONS,
    RSI_WINDOW,
    STOCH_SMOOTH,
    STOCH_WINDOW,
    WILLIAMS_WINDOW,
)

MIN_BARS = max(
    *EMA_WINDOWS,
    MACD_SLOW + MACD_SIGNAL - 1,
    2 * ADX_WINDOW,
    max(RETURN_HORIZONS) + 1,
    OBV_FLOW_WINDOW + 1,
)
"""Fewest bars for which every feature of the last bar is defined (the 50-bar EMA decides)."""

CCI_CONSTANT = 0.015
"""``ta``'s CCI constant, left at its default by the reference."""

_INV_COND_TOL = np.finfo(np.float64).eps * 1e3
"""pandas' rolling-variance threshold: an update that keeps fewer than ~3 significant digits
triggers a from-scratch recompute of the window."""

PYTHON_LOOPS_MAX_WINDOWS = 10
"""Batches up to this many windows step through the bars in Python floats, bigger ones in NumPy
(measured: ``benchmarks/bench_features.py``, docs/BENCHMARKS.md)."""

Loops = Literal["numpy", "python"]


def window_features(windows: np.ndarray, *, loops: Loops | None = None) -> np.ndarray:
    """Feature row of the last candle of each window, vectorised across windows.

    Args:
        windows: float ``(n_windows, n_bars, 5)``, columns open, high, low, close, volume,
            oldest bar first, ``n_bars >= MIN_BARS``. Validating candles is the caller's job.
        loops: how the recursions step through the bars (the same bits either way); default
            ``python`` up to :data:`PYTHON_LOOPS_MAX_WINDOWS` windows, else ``numpy``.

    Returns:
        ``(n_windows, len(FEATURE_NAMES))`` float64 in :data:`FEATURE_NAMES` order, unchecked
        for finiteness (as the reference, a 0/0 gives NaN).
    """
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 3 or windows.shape[2] != len(OHLCV_COLUMNS):
        raise ValueError(f"windows must have shape (n, bars, 5), got {windows.shape}")
    if windows.shape[1] < MIN_BARS:
        raise ValueError(f"the fast path needs at least {MIN_BARS} bars, got {windows.shape[1]}")
    if loops is None:
        loops = "python" if windows.shape[0] <= PYTHON_LOOPS_MAX_WINDOWS else "numpy"
    if loops not in ("numpy", "python"):
        raise ValueError(f"loops must be 'numpy' or 'python', got {loops!r}")
    python = loops == "python"
    _, high, low, close, volume = np.ascontiguousarray(windows.transpose(2, 1, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            **_returns(close),
            **_averages(close, python),
            **_rolling_features(high, low, close, volume, python),
            **_wilder_features(high, low, close, python),
            **_money_flow(high, low, close, volume),
        }
    return np.stack([out[name] for name in FEATURE_NAMES], axis=1)


# -- features ------------------------------------------------------------------------------


def _returns(close: np.ndarray) -> dict[str, np.ndarray]:
    """``ta`` ROC / 100: ``((c - c[-h]) / c[-h]) * 100 / 100``."""
    return {
        f"ret_{h}": (close[-1] - close[-1 - h]) / close[-1 - h] * 100 / 100.0
        for h in RETURN_HORIZONS
    }


def _averages(close: np.ndarray, python: bool) -> dict[str, np.ndarray]:
    """RSI, MACD and EMA distances: one stacked ``ewm`` recursion over the close and RSI's
    gains and losses, then MACD's signal line over the MACD line."""
    diff = close - _shifted(close)
    gains = np.where(diff > 0, diff, 0.0)  # bar 0 too: ta's NaN > 0 is False, so 0.0
    losses = -np.where(diff < 0, diff, 0.0)
    spans = (MACD_FAST, MACD_SLOW, *EMA_WINDOWS)
    coms = [_com_from_span(s) for s in spans] + [_com_from_alpha(1 / RSI_WINDOW)] * 2
    inputs = np.empty((close.shape[0], len(coms), close.shape[1]))
    inputs[:, : len(spans)] = close[:, None, :]
    inputs[:, -2] = gains
    inputs[:, -1] = losses
    ewm_paths = _ewm_paths_python if python else _ewm_paths
    paths = ewm_paths(inputs, coms)

    mean_gain, mean_loss = paths[-1, -2], paths[-1, -1]
    rsi = np.where(mean_loss == 0, 100, 100 - (100 / (1 + mean_gain / mean_loss)))
    macd = paths[:, 0] - paths[:, 1]  # missing before bar MACD_SLOW - 1 in ta
    signal = ewm_paths(macd[MACD_SLOW - 1 :, None], [_com_from_span(MACD_SIGNAL)])[-1, 0]
    last = close[-1]
    return {
        f"rsi_{RSI_WINDOW}": rsi,
        "macd_line_norm": macd[-1] / last,
        "macd_signal_norm": signal / last,
        "macd_diff_norm": (macd[-1] - signal) / last,
        **{f"ema_dist_{w}": last / paths[-1, 2 + k] - 1.0 for k, w in enumerate(EMA_WINDOWS)},
    }


def _rolling_features(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, python: bool
) -> dict[str, np.ndarray]:
    """Bollinger, stochastic, OBV flow, CCI and Williams %R, with the neutral values of
    :mod:`features.indicators` where a window has no range."""
    typical = (high + low + close) / 3.0
    lowest = _rolling_extreme(low, STOCH_WINDOW, highest=False)
    highest = _rolling_extreme(high, STOCH_WINDOW, highest=True)
    stoch_k = np.zeros_like(close)  # missing in ta before bar STOCH_WINDOW - 1; see below
    stoch_k[STOCH_WINDOW - 1 :] = np.where(
        highest == lowest,
        50.0,
        100 * (close[STOCH_WINDOW - 1 :] - lowest) / (highest - lowest),
    )
    # One stacked running sum; a missing leading value is given as 0, which leaves pandas'
    # all-zero starting state unchanged, exactly as skipping it does.
    sums = (_rolling_kahan_sums_python if python else _rolling_kahan_sums)(
        np.stack([close, typical, volume, stoch_k], axis=1),
        (BOLLINGER_WINDOW, CCI_WINDOW, OBV_FLOW_WINDOW, STOCH_SMOOTH),
    )

    close_window = _tail(close, BOLLINGER_WINDOW)
    mavg = _finish_rolling(close_window, sums[0], mean=True)
    variance = _rolling_variance_python if python else _rolling_variance
    mstd = _zsqrt(variance(close, BOLLINGER_WINDOW))
    hband = mavg + BOLLINGER_STD * mstd
    lband = mavg - BOLLINGER_STD * mstd
    pband = (close[-1] - lband) / np.where(hband != lband, hband - lband, np.nan)
    flat_close = close_window.max(axis=1) == close_window.min(axis=1)

    signed_volume = np.where(close < _shifted(close), -volume, volume)
    obv = np.cumsum(signed_volume, axis=0)  # sequential, as pandas' cumsum
    traded = _finish_rolling(_tail(volume, OBV_FLOW_WINDOW), sums[2], mean=False)
    flow = (obv[-1] - obv[-1 - OBV_FLOW_WINDOW]) / traded

    # ta's CCI deviation is np.mean(np.abs(x - np.mean(x))) over each window.
    typical_window = _tail(typical, CCI_WINDOW)
    centre = _numpy_sum(typical_window) / CCI_WINDOW
    mad = _numpy_sum(np.abs(typical_window - centre[:, None])) / CCI_WINDOW
    typical_mean = _finish_rolling(typical_window, sums[1], mean=True)
    flat_typical = (typical_window == typical_window[:, -1:]).all(axis=1)

    highest_w = high[-WILLIAMS_WINDOW:].max(axis=0)
    lowest_w = low[-WILLIAMS_WINDOW:].min(axis=0)
    williams = -100 * (highest_w - close[-1]) / (highest_w - lowest_w)
    return {
        f"bb_pband_{BOLLINGER_WINDOW}": np.where(flat_close, 0.5, pband),
        f"bb_wband_{BOLLINGER_WINDOW}": ((hband - lband) / mavg) * 100,
        f"stoch_k_{STOCH_WINDOW}": stoch_k[-1],
        f"stoch_d_{STOCH_WINDOW}": _finish_rolling(
            _tail(stoch_k, STOCH_SMOOTH), sums[3], mean=True
        ),
        f"obv_flow_{OBV_FLOW_WINDOW}": np.where(traded != 0, flow, 0.0),
        f"cci_{CCI_WINDOW}": np.where(
            flat_typical, 0.0, (typical[-1] - typical_mean) / (CCI_CONSTANT * mad)
        ),
        f"williams_r_{WILLIAMS_WINDOW}": np.where(highest_w == lowest_w, -50.0, williams),
    }


def _money_flow(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> dict[str, np.ndarray]:
    """``ta``'s MFI over the last window (NumPy sums, as its ``rolling.apply``); 0/0 gives 50."""
    typical = (high + low + close) / 3.0
    previous = _shifted(typical)
    direction = np.where(typical > previous, 1, np.where(typical < previous, -1, 0))
    flows = _tail(typical * volume * direction, MFI_WINDOW)
    positive = _numpy_sum(np.where(flows >= 0.0, flows, 0.0))
    negative = np.abs(_numpy_sum(np.where(flows < 0.0, flows, 0.0)))
    mfi = 100 - (100 / (1 + positive / negative))
    return {f"mfi_{MFI_WINDOW}": np.where(np.isnan(mfi), 50.0, mfi)}


def _wilder_features(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, python: bool
) -> dict[str, np.ndarray]:
    """ATR over the close, ADX, +DI and -DI, replaying ``ta`` 0.11's loops."""
    n_bars = close.shape[0]
    previous = close[:-1]
    # ATR: true range (bar 0: high - low), seeded with the mean of the first window.
    true_range = np.empty_like(close)
    true_range[0] = high[0] - low[0]
    true_range[1:] = np.maximum(
        np.maximum(high[1:] - low[1:], np.abs(high[1:] - previous)), np.abs(low[1:] - previous)
    )
    atr = _numpy_sum(true_range[:ATR_WINDOW].T) / float(ATR_WINDOW)
    if python:
        atr = _wilder_mean_python(atr, true_range[ATR_WINDOW:], ATR_WINDOW)
    else:
        for i in range(ATR_WINDOW, n_bars):
            atr = (atr * (ATR_WINDOW - 1) + true_range[i]) / float(ATR_WINDOW)

    # ADX: range, up move and down move from bar 1, seeded with plain sums of bars 1..n at bar
    # n, then x - x / n + value; DI from their ratios, ADX a Wilder average of DX from bar 2n-1.
    n = ADX_WINDOW
    moves = np.empty((n_bars, 3, close.shape[1]))
    moves[0] = np.nan
    moves[1:, 0] = np.maximum(high[1:], previous) - np.minimum(low[1:], previous)
    up = high[1:] - high[:-1]
    down = low[:-1] - low[1:]
    moves[1:, 1] = np.where((up > down) & (up > 0), up, 0.0)
    moves[1:, 2] = np.where((down > up) & (down > 0), down, 0.0)
    state = _numpy_sum(moves[1 : n + 1].transpose(1, 2, 0))
    if python:
        smoothed = _wilder_sums_python(state, moves[n + 1 :], n)
    else:
        smoothed = np.empty((n_bars - n, 3, close.shape[1]))
        smoothed[0] = state
        for i in range(n + 1, n_bars):
            state = state - state / float(n) + moves[i]
            smoothed[i - n] = state
    true_range_sum, plus_move, minus_move = smoothed[:, 0], smoothed[:, 1], smoothed[:, 2]
    plus_di = np.where(true_range_sum != 0, 100 * (plus_move / true_range_sum), 0.0)
    minus_di = np.where(true_range_sum != 0, 100 * (minus_move / true_range_sum), 0.0)
    di_sum = plus_di + minus_di
    dx = np.where(di_sum != 0, 100 * np.abs((plus_di - minus_di) / di_sum), 0.0)
    adx = _numpy_sum(dx[:n].T) / n
    if python:
        adx = _wilder_mean_python(adx, dx[n:], n)
    else:
        for i in range(n, len(dx)):
            adx = ((adx * (n - 1)) + dx[i]) / float(n)
    return {
        f"atr_norm_{ATR_WINDOW}": atr / close[-1],
        f"adx_{ADX_WINDOW}": adx,
        f"adx_pos_{ADX_WINDOW}": plus_di[-1],
        f"adx_neg_{ADX_WINDOW}": minus_di[-1],
    }


# -- pandas / NumPy primitives, replayed -------------------------------------------------------


def _shifted(series: np.ndarray) -> np.ndarray:
    """``series.shift(1)`` along bars (first bar missing)."""
    out = np.empty_like(series)
    out[0] = np.nan
    out[1:] = series[:-1]
    return out


def _tail(series: np.ndarray, n: int) -> np.ndarray:
    """The last ``n`` bars of ``series`` (bars, windows) as contiguous ``(windows, n)`` rows."""
    return np.ascontiguousarray(series[-n:].T)


def _numpy_sum(rows: np.ndarray) -> np.ndarray:
    """``np.sum`` of each row (last axis), in NumPy's own pairwise order, as on a 1-D array."""
    return np.sum(np.ascontiguousarray(rows), axis=-1)


def _rolling_extreme(series: np.ndarray, n: int, *, highest: bool) -> np.ndarray:
    """Rolling max (or min) over ``n`` bars, for every bar from ``n - 1`` on (exact)."""
    view = np.lib.stride_tricks.sliding_window_view(series, n, axis=0)
    return view.max(axis=-1) if highest else view.min(axis=-1)


def _com_from_span(span: int) -> float:
    """pandas ``get_center_of_mass`` for ``span``."""
    return float((span - 1) / 2)


def _com_from_alpha(alpha: float) -> float:
    """pandas ``get_center_of_mass`` for ``alpha``."""
    return float((1 - alpha) / alpha)


def _ewm_paths(values: np.ndarray, coms: list[float]) -> np.ndarray:
    """pandas ``ewm(com=coms[k], adjust=False).mean()`` of ``values[:, k]``, every bar.

    Args:
        values: ``(bars, series, windows)``, no missing values (start the slice at the first
            observation: pandas seeds there).
        coms: centre of mass of each series.

    Returns:
        ``(bars, series, windows)``; ``min_periods`` is not applied.
    """
    old, new = [], []
    for com in coms:
        alpha = 1.0 / (1.0 + com)
        old.append(1.0 - alpha)
        new.append(1.0 - old[-1] if com == 1 else alpha)  # pandas' special case
    old_wt = np.array(old)[:, None]
    new_wt = np.array(new)[:, None]
    total_wt = old_wt + new_wt
    paths = np.empty_like(values)
    state = values[0].copy()
    paths[0] = state
    update = np.empty_like(state)
    scratch = np.empty_like(state)
    for i in range(1, values.shape[0]):
        current = values[i]
        np.multiply(old_wt, state, out=update)
        np.multiply(new_wt, current, out=scratch)
        update += scratch
        update /= total_wt
        np.copyto(state, update, where=state != current)  # pandas skips equal values
        paths[i] = state
    return paths


def _rolling_kahan_sums(values: np.ndarray, lengths: tuple[int, ...]) -> np.ndarray:
    """pandas' running Kahan sum of ``rolling(lengths[k])`` over ``values[:, k]``, last bar.

    Args:
        values: ``(bars, series, windows)``.
        lengths: rolling window length of each series.

    Returns:
        ``(series, windows)`` raw running sums (see :func:`_finish_rolling`).
    """
    negated_removals = np.zeros_like(values)  # removing 0 before any removal changes nothing
    for k, length in enumerate(lengths):
        negated_removals[length:, k] = -values[:-length, k]
    total = np.zeros_like(values[0])
    comp_add = np.zeros_like(total)
    comp_remove = np.zeros_like(total)
    y = np.empty_like(total)
    t = np.empty_like(total)
    for i in range(values.shape[0]):
        for value, comp in ((negated_removals[i], comp_remove), (values[i], comp_add)):
            # y = val - c; t = sum + y; c = t - sum - y; sum = t
            np.subtract(value, comp, out=y)
            np.add(total, y, out=t)
            np.subtract(t, total, out=comp)
            comp -= y
            total, t = t, total
    return total


def _finish_rolling(window: np.ndarray, running_sum: np.ndarray, *, mean: bool) -> np.ndarray:
    """pandas' result for a full rolling window ``(windows, n)`` from its running sum.

    An all-equal window gives its value (times ``n`` for a sum) exactly; a mean of
    non-negative values is never below 0, nor one of negative values above 0.
    """
    n = window.shape[1]
    last = window[:, -1]
    all_same = (window == last[:, None]).all(axis=1)
    if not mean:
        return np.where(all_same, last * n, running_sum)
    result = running_sum / float(n)
    negatives = np.signbit(window).sum(axis=1)
    result = np.where((negatives == 0) & (result < 0), 0.0, result)
    result = np.where((negatives == n) & (result > 0), 0.0, result)
    return np.where(all_same, last, result)


class _Welford:
    """pandas' running variance state (``roll_var``) for a batch of windows."""

    def __init__(self, n_windows: int) -> None:
        self.nobs = 0.0
        self.mean = np.zeros(n_windows)
        self.ssqdm = np.zeros(n_windows)
        self.comp_add = np.zeros(n_windows)
        self.comp_remove = np.zeros(n_windows)
        self._prev_mean = np.empty(n_windows)
        self._y = np.empty(n_windows)
        self._t = np.empty(n_windows)
        self._term = np.empty(n_windows)

    def update(self, value: np.ndarray, *, add: bool) -> None:
        """``add_var``, or ``remove_var`` (never down to 0 observations here)."""
        comp = self.comp_add if add else self.comp_remove
        prev_mean, y, t, term = self._prev_mean, self._y, self._t, self._term
        self.nobs += 1.0 if add else -1.0
        np.subtract(self.mean, comp, out=prev_mean)
        np.subtract(value, comp, out=y)
        np.subtract(y, self.mean, out=t)
        np.add(t, self.mean, out=comp)
        comp -= y
        t /= self.nobs
        np.subtract(value, prev_mean, out=term)
        if add:
            self.mean += t
            term *= value - self.mean
            self.ssqdm += term
        else:
            self.mean -= t
            term *= value - self.mean
            self.ssqdm -= term


def _rolling_variance(values: np.ndarray, n: int) -> np.ndarray:
    """pandas ``rolling(n).var(ddof=0)`` of ``values`` (bars, windows) at the last bar.

    pandas recomputes a window from scratch after an update that shrinks the sum of squared
    deviations by more than ``1 / _INV_COND_TOL``. That is rare, so the replay first runs
    without the check, recording the sum after every update, and is repeated with the check
    and the recomputes only if any update would have triggered one.
    """
    n_updates = 2 * values.shape[0] - n
    for careful in (False, True):
        state = _Welford(values.shape[1])
        history = np.zeros((n_updates + 1, values.shape[1]))
        k = 0
        for i in range(values.shape[0]):
            for index, add in ((i - n, False), (i, True)):
                if index >= 0:
                    state.update(values[index], add=add)
                    k += 1
                    history[k] = state.ssqdm
            if careful:
                updates = history[k - (2 if i >= n else 1) : k + 1]
                unstable = (updates[:-1] * _INV_COND_TOL > updates[1:]).any(axis=0)
                if unstable.any():
                    _recompute(state, values, i, n, np.flatnonzero(unstable))
                    history[k] = state.ssqdm
        if careful or not (history[:-1] * _INV_COND_TOL > history[1:]).any():
            return state.ssqdm / (state.nobs - 0.0)
    raise AssertionError("unreachable")


def _recompute(state: _Welford, values: np.ndarray, bar: int, n: int, redo: np.ndarray) -> None:
    """Rebuild the window ending at ``bar`` from scratch for the windows ``redo``, as pandas
    does after an update that lost precision."""
    fresh = _Welford(len(redo))
    for j in range(max(0, bar + 1 - n), bar + 1):
        fresh.update(values[j, redo], add=True)
    state.mean[redo] = fresh.mean
    state.ssqdm[redo] = fresh.ssqdm
    state.comp_add[redo] = fresh.comp_add
    state.comp_remove[redo] = 0.0


# -- the same recursions in Python floats, one window at a time ------------------------------
# Each function mirrors the NumPy function named without ``_python``: same operations, same
# order, so the same IEEE results (Python floats are C doubles; NumPy's element-wise + - * /
# are the correctly rounded IEEE operations too).


def _ewm_paths_python(values: np.ndarray, coms: list[float]) -> np.ndarray:
    """:func:`_ewm_paths`."""
    out = np.empty_like(values)
    for k, com in enumerate(coms):
        alpha = 1.0 / (1.0 + com)
        old = 1.0 - alpha
        new = 1.0 - old if com == 1 else alpha
        total = old + new
        for w, series in enumerate(values[:, k].T.tolist()):
            state = series[0]
            path = [state]
            append = path.append
            for current in series[1:]:
                if state != current:
                    state = (old * state + new * current) / total
                append(state)
            out[:, k, w] = path
    return out


def _rolling_kahan_sums_python(values: np.ndarray, lengths: tuple[int, ...]) -> np.ndarray:
    """:func:`_rolling_kahan_sums`."""
    out = np.empty(values.shape[1:])
    for k, length in enumerate(lengths):
        for w, series in enumerate(values[:, k].T.tolist()):
            total = comp_add = comp_remove = 0.0
            for i, value in enumerate(series):
                removed = -series[i - length] if i >= length else 0.0
                y = removed - comp_remove
                t = total + y
                comp_remove = t - total - y
                total = t
                y = value - comp_add
                t = total + y
                comp_add = t - total - y
                total = t
            out[k, w] = total
    return out


def _welford_update(
    value: float, nobs: float, mean: float, ssqdm: float, comp: float, add: bool
) -> tuple[float, float, float, float]:
    """:meth:`_Welford.update` for one window: ``add_var`` or ``remove_var`` of ``value``;
    the new ``nobs, mean, ssqdm`` and compensation (``comp_add`` or ``comp_remove``)."""
    nobs += 1.0 if add else -1.0
    prev_mean = mean - comp
    y = value - comp
    t = y - mean
    comp = t + mean
    comp -= y
    t /= nobs
    term = value - prev_mean
    if add:
        mean += t
        term *= value - mean
        ssqdm += term
    else:
        mean -= t
        term *= value - mean
        ssqdm -= term
    return nobs, mean, ssqdm, comp


def _rolling_variance_python(values: np.ndarray, n: int) -> np.ndarray:
    """:func:`_rolling_variance` (its careful replay, which equals the quick one whenever no
    recompute is due)."""
    tol = float(_INV_COND_TOL)
    out = np.empty(values.shape[1])
    for w, series in enumerate(values.T.tolist()):
        nobs = mean = ssqdm = comp_add = comp_remove = 0.0
        for i, value in enumerate(series):
            before = ssqdm
            unstable = False
            if i >= n:  # the bar leaving the window
                nobs, mean, ssqdm, comp_remove = _welford_update(
                    series[i - n], nobs, mean, ssqdm, comp_remove, False
                )
                unstable = before * tol > ssqdm
                before = ssqdm
            nobs, mean, ssqdm, comp_add = _welford_update(value, nobs, mean, ssqdm, comp_add, True)
            if unstable or before * tol > ssqdm:  # pandas recomputes the window (_recompute)
                fresh = (0.0, 0.0, 0.0, 0.0)
                for old in series[max(0, i + 1 - n) : i + 1]:
                    fresh = _welford_update(old, *fresh, True)
                _, mean, ssqdm, comp_add = fresh
                comp_remove = 0.0
        out[w] = ssqdm / (nobs - 0.0)
    return out


def _wilder_mean_python(seed: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``x = (x * (n - 1) + value) / n`` over ``values`` (bars, windows) from ``seed``."""
    out = np.empty_like(seed)
    keep, divisor = float(n - 1), float(n)
    for w, (x, series) in enumerate(zip(seed.tolist(), values.T.tolist(), strict=True)):
        for value in series:
            x = (x * keep + value) / divisor
        out[w] = x
    return out


def _wilder_sums_python(seed: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``ta``'s ADX smoothing ``x = x - x / n + value`` over ``values`` (bars, 3, windows) from
    ``seed`` (3, windows), every step: ``(bars + 1, 3, windows)``."""
    out = np.empty((values.shape[0] + 1, *seed.shape))
    divisor = float(n)
    for k in range(seed.shape[0]):
        for w, (x, series) in enumerate(
            zip(seed[k].tolist(), values[:, k].T.tolist(), strict=True)
        ):
            path = [x]
            append = path.append
            for value in series:
                x = x - x / divisor + value
                append(x)
            out[:, k, w] = path
    return out


def _zsqrt(variance: np.ndarray) -> np.ndarray:
    """pandas' square root of a rolling variance: a negative rounding residue gives 0."""
    return np.sqrt(np.where(variance < 0, 0.0, variance))
