"""pandas' and ``ta``'s numeric internals, replayed for a batch of windows: the fast path's kernels.

The fast path aims at equality with the ``ta`` reference, not closeness: every kernel repeats the
floating-point operations, in the same order, of the code the reference runs (``ta`` 0.11 on
pandas 3.1 and NumPy 2). Series are laid out ``(bars, windows)``.

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
- ``ta``'s Python loops (ATR, ADX) are Wilder's recursions, replayed with their update
  expressions.

**Two loop flavours.** Each recursion over the bars (EWM, Kahan sum, Welford variance, Wilder's
mean and sums) is written twice, next to each other, with the same operations in the same order:
as NumPy vector operations across all windows (one call per bar and operation, ~1 us of call
overhead each, whatever the batch) and as scalar loops, one window at a time, compiled by Numba
(IEEE double arithmetic like NumPy's, no fast-math: nothing reassociated or fused). The scalar
flavour wins up to ~1,000 windows a batch, the NumPy one above (docs/BENCHMARKS.md, "Feature
computation", loop flavours per family); the tests hold the two to the same bits.
:class:`Loops` bundles one flavour's recursions, so the feature code calls
``bars.loops.ewm_paths(...)`` and never branches on the flavour; everything else here has one
form. ``NUMBA_DISABLE_JIT=1`` runs the scalar kernels as plain Python, with the same results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

_Kernel = TypeVar("_Kernel", bound=Callable[..., Any])
_KERNELS: dict[str, Callable[..., Any]] = {}
"""The scalar kernels, by name, as plain Python functions (compiled by :func:`_compile_kernels`)."""


def _compiled(function: _Kernel) -> _Kernel:
    """Register ``function`` as a kernel for ``numba.njit``. Numba itself is imported only at
    the first call of any kernel (it adds ~70 MiB to a process, and only the runners compute
    features), when :func:`_compile_kernels` puts every kernel's dispatcher in its place."""
    _KERNELS[function.__name__] = function

    def first_call(*args: Any) -> Any:
        _compile_kernels()
        return globals()[function.__name__](*args)

    return first_call  # type: ignore[return-value]


def _compile_kernels() -> None:
    """Replace each registered kernel by its ``numba.njit`` dispatcher (all at once, so that
    kernels calling kernels find dispatchers). A dispatcher compiles at its first call; the
    machine code is cached on disk where numba finds a writable place (``__pycache__`` beside
    this file, else ``NUMBA_CACHE_DIR`` or the user's cache directory), so later processes load
    it in milliseconds; on a read-only file system each process compiles it afresh (~2-3 s for
    all kernels)."""
    from numba import njit

    for name, function in _KERNELS.items():
        if getattr(globals()[name], "py_func", None) is function:
            continue  # compiled already
        try:
            globals()[name] = njit(cache=True)(function)
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            globals()[name] = njit(function)


def _f64(values: np.ndarray) -> np.ndarray:
    """``values`` as a float64 array of its own strides (what the compiled kernels take)."""
    return np.asarray(values, dtype=np.float64)


INV_COND_TOL = np.finfo(np.float64).eps * 1e3
"""pandas' rolling-variance threshold: an update that keeps fewer than ~3 significant digits
triggers a from-scratch recompute of the window."""


# -- one form: shifts, tails, reductions ---------------------------------------------------------


def shifted(series: np.ndarray) -> np.ndarray:
    """``series.shift(1)`` along bars (first bar missing)."""
    out = np.empty_like(series)
    out[0] = np.nan
    out[1:] = series[:-1]
    return out


def tail(series: np.ndarray, n: int) -> np.ndarray:
    """The last ``n`` bars of ``series`` (bars, windows) as contiguous ``(windows, n)`` rows."""
    return np.ascontiguousarray(series[-n:].T)


def numpy_sum(rows: np.ndarray) -> np.ndarray:
    """``np.sum`` of each row (last axis), in NumPy's own pairwise order, as on a 1-D array."""
    return np.sum(np.ascontiguousarray(rows), axis=-1)


def rolling_extreme(series: np.ndarray, n: int, *, highest: bool) -> np.ndarray:
    """Rolling max (or min) over ``n`` bars, for every bar from ``n - 1`` on (exact: a max is
    the same whatever the order). ``n - 1`` element-wise maxima of shifted slices, ~2.5x
    faster than reducing a sliding-window view's short last axis (56 -> 21 us for a 256-bar
    window)."""
    extreme = np.maximum if highest else np.minimum
    bars = series.shape[0]
    out = series[n - 1 :].copy()
    for k in range(1, n):
        extreme(out, series[n - 1 - k : bars - k], out=out)
    return out


def all_equal(rows: np.ndarray) -> np.ndarray:
    """Whether each ``(windows, n)`` row holds one value only."""
    return (rows == rows[:, -1:]).all(axis=1)


def com_from_span(span: int) -> float:
    """pandas ``get_center_of_mass`` for ``span``."""
    return float((span - 1) / 2)


def com_from_alpha(alpha: float) -> float:
    """pandas ``get_center_of_mass`` for ``alpha``."""
    return float((1 - alpha) / alpha)


def finish_rolling(window: np.ndarray, running_sum: np.ndarray, *, mean: bool) -> np.ndarray:
    """pandas' result for a full rolling window ``(windows, n)`` from its running sum.

    An all-equal window gives its value (times ``n`` for a sum) exactly; a mean of
    non-negative values is never below 0, nor one of negative values above 0.
    """
    n = window.shape[1]
    last = window[:, -1]
    same = all_equal(window)
    if not mean:
        return np.where(same, last * n, running_sum)
    result = running_sum / float(n)
    negatives = np.signbit(window).sum(axis=1)
    result = np.where((negatives == 0) & (result < 0), 0.0, result)
    result = np.where((negatives == n) & (result > 0), 0.0, result)
    return np.where(same, last, result)


def zsqrt(variance: np.ndarray) -> np.ndarray:
    """pandas' square root of a rolling variance: a negative rounding residue gives 0."""
    return np.sqrt(np.where(variance < 0, 0.0, variance))


# -- EWM: pandas ewm(com, adjust=False).mean() ---------------------------------------------------


def _ewm_weights(com: float) -> tuple[float, float]:
    """pandas' old and new weights for ``com`` (its special case at ``com == 1``)."""
    alpha = 1.0 / (1.0 + com)
    old = 1.0 - alpha
    return old, (1.0 - old if com == 1 else alpha)


def _ewm_paths_numpy(values: np.ndarray, coms: list[float]) -> np.ndarray:
    """pandas ``ewm(com=coms[k], adjust=False).mean()`` of ``values[:, k]``, every bar.

    Args:
        values: ``(bars, series, windows)``, no missing values (start the slice at the first
            observation: pandas seeds there).
        coms: centre of mass of each series.

    Returns:
        ``(bars, series, windows)``; ``min_periods`` is not applied.
    """
    weights = np.array([_ewm_weights(com) for com in coms])
    old_wt, new_wt = weights[:, :1], weights[:, 1:]
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


@_compiled
def _ewm_paths_scalar_kernel(
    values: np.ndarray, old_wt: np.ndarray, new_wt: np.ndarray, out: np.ndarray
) -> None:
    for k in range(values.shape[1]):
        old, new = old_wt[k], new_wt[k]
        total = old + new
        for w in range(values.shape[2]):
            state = values[0, k, w]
            out[0, k, w] = state
            for i in range(1, values.shape[0]):
                current = values[i, k, w]
                if state != current:
                    state = (old * state + new * current) / total
                out[i, k, w] = state


def _ewm_paths_scalar(values: np.ndarray, coms: list[float]) -> np.ndarray:
    """:func:`_ewm_paths_numpy`, one window at a time in scalar floats."""
    weights = np.array([_ewm_weights(com) for com in coms])
    out = np.empty_like(values)
    _ewm_paths_scalar_kernel(_f64(values), weights[:, 0].copy(), weights[:, 1].copy(), out)
    return out


# -- Kahan: pandas rolling(n).sum() / .mean() running sums -----------------------------------------


def _rolling_kahan_sums_numpy(values: np.ndarray, lengths: tuple[int, ...]) -> np.ndarray:
    """pandas' running Kahan sum of ``rolling(lengths[k])`` over ``values[:, k]``, last bar.

    Args:
        values: ``(bars, series, windows)``.
        lengths: rolling window length of each series.

    Returns:
        ``(series, windows)`` raw running sums (see :func:`finish_rolling`).
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


@_compiled
def _rolling_kahan_sums_scalar_kernel(
    values: np.ndarray, lengths: np.ndarray, out: np.ndarray
) -> None:
    for k in range(values.shape[1]):
        length = lengths[k]
        for w in range(values.shape[2]):
            total = comp_add = comp_remove = 0.0
            for i in range(values.shape[0]):
                removed = -values[i - length, k, w] if i >= length else 0.0
                y = removed - comp_remove
                t = total + y
                comp_remove = t - total - y
                total = t
                y = values[i, k, w] - comp_add
                t = total + y
                comp_add = t - total - y
                total = t
            out[k, w] = total


def _rolling_kahan_sums_scalar(values: np.ndarray, lengths: tuple[int, ...]) -> np.ndarray:
    """:func:`_rolling_kahan_sums_numpy`, one window at a time in scalar floats."""
    out = np.empty(values.shape[1:])
    _rolling_kahan_sums_scalar_kernel(_f64(values), np.array(lengths, dtype=np.int64), out)
    return out


# -- Welford: pandas rolling(n).var(ddof=0) --------------------------------------------------------


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


def _rolling_variance_numpy(values: np.ndarray, n: int) -> np.ndarray:
    """pandas ``rolling(n).var(ddof=0)`` of ``values`` (bars, windows) at the last bar.

    pandas recomputes a window from scratch after an update that shrinks the sum of squared
    deviations by more than ``1 / INV_COND_TOL``. That is rare, so the replay first runs
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
                unstable = (updates[:-1] * INV_COND_TOL > updates[1:]).any(axis=0)
                if unstable.any():
                    _recompute(state, values, i, n, np.flatnonzero(unstable))
                    history[k] = state.ssqdm
        if careful or not (history[:-1] * INV_COND_TOL > history[1:]).any():
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


@_compiled
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


@_compiled
def _rolling_variance_scalar_kernel(
    values: np.ndarray, n: int, tol: float, out: np.ndarray
) -> None:
    for w in range(values.shape[1]):
        nobs = mean = ssqdm = comp_add = comp_remove = 0.0
        for i in range(values.shape[0]):
            before = ssqdm
            unstable = False
            if i >= n:  # the bar leaving the window
                nobs, mean, ssqdm, comp_remove = _welford_update(
                    values[i - n, w], nobs, mean, ssqdm, comp_remove, False
                )
                unstable = before * tol > ssqdm
                before = ssqdm
            nobs, mean, ssqdm, comp_add = _welford_update(
                values[i, w], nobs, mean, ssqdm, comp_add, True
            )
            if unstable or before * tol > ssqdm:  # pandas recomputes the window (_recompute)
                fresh_nobs = fresh_mean = fresh_ssqdm = fresh_comp = 0.0
                for j in range(max(0, i + 1 - n), i + 1):
                    fresh_nobs, fresh_mean, fresh_ssqdm, fresh_comp = _welford_update(
                        values[j, w], fresh_nobs, fresh_mean, fresh_ssqdm, fresh_comp, True
                    )
                mean, ssqdm, comp_add = fresh_mean, fresh_ssqdm, fresh_comp
                comp_remove = 0.0
        out[w] = ssqdm / (nobs - 0.0)


def _rolling_variance_scalar(values: np.ndarray, n: int) -> np.ndarray:
    """:func:`_rolling_variance_numpy` (its careful replay, which equals the quick one whenever
    no recompute is due), one window at a time in scalar floats."""
    out = np.empty(values.shape[1])
    _rolling_variance_scalar_kernel(_f64(values), n, float(INV_COND_TOL), out)
    return out


# -- Wilder: ta's ATR / ADX loops ------------------------------------------------------------------


def _wilder_mean_numpy(seed: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``x = (x * (n - 1) + value) / n`` over ``values`` (bars, windows) from ``seed``: the
    last ``x``."""
    x = seed
    for value in values:
        x = (x * (n - 1) + value) / float(n)
    return x


@_compiled
def _wilder_mean_scalar_kernel(
    seed: np.ndarray, values: np.ndarray, n: int, out: np.ndarray
) -> None:
    keep, divisor = float(n - 1), float(n)
    for w in range(values.shape[1]):
        x = seed[w]
        for i in range(values.shape[0]):
            x = (x * keep + values[i, w]) / divisor
        out[w] = x


def _wilder_mean_scalar(seed: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """:func:`_wilder_mean_numpy`, one window at a time in scalar floats."""
    out = np.empty(seed.shape)
    _wilder_mean_scalar_kernel(_f64(seed), _f64(values), n, out)
    return out


def _wilder_sums_numpy(seed: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``ta``'s ADX smoothing ``x = x - x / n + value`` over ``values`` (bars, series, windows)
    from ``seed`` (series, windows), every step: ``(bars + 1, series, windows)``."""
    out = np.empty((values.shape[0] + 1, *seed.shape))
    out[0] = state = seed
    for i, value in enumerate(values, start=1):
        state = state - state / float(n) + value
        out[i] = state
    return out


@_compiled
def _wilder_sums_scalar_kernel(
    seed: np.ndarray, values: np.ndarray, n: int, out: np.ndarray
) -> None:
    divisor = float(n)
    for k in range(seed.shape[0]):
        for w in range(seed.shape[1]):
            x = seed[k, w]
            out[0, k, w] = x
            for i in range(values.shape[0]):
                x = x - x / divisor + values[i, k, w]
                out[i + 1, k, w] = x


def _wilder_sums_scalar(seed: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """:func:`_wilder_sums_numpy`, one window at a time in scalar floats."""
    out = np.empty((values.shape[0] + 1, *seed.shape))
    _wilder_sums_scalar_kernel(_f64(seed), _f64(values), n, out)
    return out


# -- the two flavours ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loops:
    """One loop flavour's recursions (see the module docstring); same bits either way.

    Attributes:
        name: ``"numpy"`` or ``"python"``.
        ewm_paths: ``(values (bars, series, windows), coms) -> paths``, every bar.
        rolling_kahan_sums: ``(values (bars, series, windows), lengths) -> (series, windows)``.
        rolling_variance: ``(values (bars, windows), n) -> (windows,)`` at the last bar.
        wilder_mean: ``(seed (windows,), values (bars, windows), n) -> (windows,)``.
        wilder_sums: ``(seed (series, windows), values (bars, series, windows), n) -> path``.
    """

    name: str
    ewm_paths: Callable[[np.ndarray, list[float]], np.ndarray]
    rolling_kahan_sums: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]
    rolling_variance: Callable[[np.ndarray, int], np.ndarray]
    wilder_mean: Callable[[np.ndarray, np.ndarray, int], np.ndarray]
    wilder_sums: Callable[[np.ndarray, np.ndarray, int], np.ndarray]


NUMPY_LOOPS = Loops(
    "numpy",
    _ewm_paths_numpy,
    _rolling_kahan_sums_numpy,
    _rolling_variance_numpy,
    _wilder_mean_numpy,
    _wilder_sums_numpy,
)
SCALAR_LOOPS = Loops(
    "scalar",
    _ewm_paths_scalar,
    _rolling_kahan_sums_scalar,
    _rolling_variance_scalar,
    _wilder_mean_scalar,
    _wilder_sums_scalar,
)
LOOPS = {loops.name: loops for loops in (NUMPY_LOOPS, SCALAR_LOOPS)}
