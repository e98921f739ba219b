"""The batched fast path equals the ``ta`` reference on real candles, flat stretches included.

Reference: :func:`features.indicators.indicator_frame` (``ta``), last row of each window.
Tolerance: ``rtol=1e-9`` with an absolute floor of ``1e-12`` (feature units) for values near 0.
On the pinned stack (ta 0.11, pandas 3.1, NumPy 2) the two agree to the last bit; the floor
leaves room only for a platform whose pandas build fuses multiply-adds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from ta.trend import CCIIndicator

from devtools import REPO_ROOT
from features import (
    FEATURE_NAMES,
    OHLCV_COLUMNS,
    WARMUP_BARS,
    CandleValidationError,
    compute_window_features,
    contiguous_segments,
)
from features._family import Bars, PriceSeries
from features._fast import MIN_BARS, SCALAR_LOOPS_MAX_WINDOWS, window_features
from features._replay import LOOPS as LOOPS_BY_NAME
from features.indicators import BOLLINGER_WINDOW, CCI_WINDOW, FAMILIES, indicator_frame
from training.data import load_bundled_eurusd

RTOL = 1e-9
ATOL = 1e-12
WINDOW_LENGTHS = (WARMUP_BARS + 1, 256, 300, 512)
LOOPS = ["numpy", "scalar"]  # the two flavours of window_features' recursions
DOWNTIME_START = pd.Timestamp("2018-02-08 01:00", tz="UTC")
"""First of 33 flat, zero-volume candles (exchange downtime) in the bundled BTCUSDT data."""
DOWNTIME_BARS = 33


def _reference(windows: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            indicator_frame(pd.DataFrame(w, columns=list(OHLCV_COLUMNS))).iloc[-1].to_numpy()
            for w in windows
        ]
    )


def _windows(frame: pd.DataFrame, ends: list[int], n_bars: int) -> np.ndarray:
    """Windows of ``n_bars`` candles ending at (and including) each row in ``ends``."""
    values = frame[list(OHLCV_COLUMNS)].to_numpy()
    return np.stack([values[end + 1 - n_bars : end + 1] for end in ends])


def _assert_matches_reference(fast: np.ndarray, reference: np.ndarray) -> None:
    assert fast.shape == reference.shape
    for col, name in enumerate(FEATURE_NAMES):
        np.testing.assert_allclose(
            fast[:, col], reference[:, col], rtol=RTOL, atol=ATOL, err_msg=name
        )


@pytest.fixture(scope="module")
def segment(btc_frame) -> pd.DataFrame:
    """The longest gap-free stretch of the bundled BTCUSDT candles (it holds the downtime)."""
    return max(contiguous_segments(btc_frame), key=len).reset_index(drop=True)


@pytest.fixture(scope="module")
def downtime(segment) -> int:
    start = int(np.flatnonzero(segment["timestamp"] == DOWNTIME_START)[0])
    flat = segment.iloc[start : start + DOWNTIME_BARS]
    assert (flat["high"] == flat["low"]).all() and (flat["volume"] == 0).all()
    assert flat["close"].nunique() == 1
    return start


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("n_bars", WINDOW_LENGTHS)
def test_fast_path_equals_ta_on_windows_across_the_data(segment, n_bars, loops):
    ends = np.linspace(n_bars, len(segment) - 1, 10).astype(int).tolist()
    windows = _windows(segment, ends, n_bars)
    _assert_matches_reference(window_features(windows, loops=loops), _reference(windows))


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("n_bars", [WARMUP_BARS + 1, 256])
def test_fast_path_equals_ta_through_flat_zero_volume_downtime(segment, downtime, n_bars, loops):
    """Windows ending before, inside (flat at the end, up to fully flat indicator windows) and
    after the 2018-02-08 downtime."""
    offsets = (-1, 0, 1, 4, 13, 18, 19, 20, 24, 32, 33, 34, 45, 60, 200)
    windows = _windows(segment, [downtime + k for k in offsets], n_bars)
    fast = window_features(windows, loops=loops)
    _assert_matches_reference(fast, _reference(windows))
    # Fully flat at the end: the neutral values of the range-based oscillators, on both paths.
    flat_row = dict(zip(FEATURE_NAMES, fast[offsets.index(32)], strict=True))
    assert flat_row["stoch_k_14"] == flat_row["stoch_d_14"] == 50.0
    assert flat_row["williams_r_14"] == -50.0
    assert flat_row["bb_pband_20"] == 0.5
    assert flat_row["mfi_14"] == 50.0
    assert flat_row["obv_flow_24"] == 0.0
    assert flat_row["ret_1"] == 0.0
    assert flat_row[f"cci_{CCI_WINDOW}"] == 0.0


def test_outage_windows_have_a_defined_value_for_every_feature_on_every_path(
    outage_windows, segment, downtime
):
    """Flat, zero-volume tails (an outage) at 40 price levels of a real window, plus awkward
    small levels, other tail lengths and the bundled 2018-02-08 downtime: every feature is
    finite, CCI is 0 (its 0/0, as TA-Lib answers), the same on the ``ta`` reference, both loop
    flavours and the checked entry point."""
    windows = [w[list(OHLCV_COLUMNS)].to_numpy() for w in outage_windows]
    base = windows[0]
    for price in (0.1, 0.3, 0.7, 1.1, 2.2, 3.3, 1e-3, 123.45):  # (3p) / 3 != p for most
        for tail in (30, 20, 21, 60, 300):
            flat = base.copy()
            flat[-tail:, :4] = price
            flat[-tail:, 4] = 0.0
            windows.append(flat)
    batch = np.stack(windows)
    downtime_windows = _windows(segment, [downtime + k for k in range(19, DOWNTIME_BARS)], 300)
    batch = np.concatenate([batch, downtime_windows])
    # The raw ta CCI is 0/0 (NaN) at many of these levels: the case the neutral value covers.
    raw_cci = [
        CCIIndicator(*(pd.Series(w[:, OHLCV_COLUMNS.index(k)]) for k in ("high", "low", "close")))
        .cci()
        .iloc[-1]
        for w in batch
    ]
    assert np.isnan(raw_cci[: len(outage_windows)]).sum() >= 10
    reference = _reference(batch)
    assert np.isfinite(reference).all()
    np.testing.assert_array_equal(reference[:, FEATURE_NAMES.index(f"cci_{CCI_WINDOW}")], 0.0)
    flavours = [window_features(batch, loops=loops) for loops in LOOPS]
    for fast in flavours:
        _assert_matches_reference(fast, reference)
    np.testing.assert_array_equal(flavours[0], flavours[1])
    np.testing.assert_array_equal(compute_window_features(batch), flavours[0])
    np.testing.assert_array_equal(compute_window_features(batch, engine="ta"), reference)


@pytest.mark.parametrize("loops", LOOPS)
def test_bollinger_width_replays_pandas_running_variance_on_a_flat_stretch(
    segment, downtime, loops
):
    """Inside the downtime the last 20 closes are equal, yet ta's width is not 0: pandas' running
    variance keeps a residue of earlier bars. A fresh variance of the window says ~0 and would
    miss the reference; the replay matches it."""
    offsets = range(19, DOWNTIME_BARS)  # the last 20 closes are all equal
    windows = _windows(segment, [downtime + k for k in offsets], 256)
    width = FEATURE_NAMES.index(f"bb_wband_{BOLLINGER_WINDOW}")
    reference = _reference(windows)[:, width]
    fast = window_features(windows, loops=loops)[:, width]
    np.testing.assert_allclose(fast, reference, rtol=RTOL, atol=ATOL)
    closes = windows[:, -BOLLINGER_WINDOW:, OHLCV_COLUMNS.index("close")]
    fresh = 4 * closes.std(axis=1) / closes.mean(axis=1) * 100
    assert fresh.max() < 1e-12
    assert reference.max() > 1e-6
    assert (reference == 0).any()  # where pandas recomputed the window after the cancellation
    assert (np.abs(fast - fresh) > 1e-6).any()


@pytest.mark.parametrize("loops", LOOPS)
def test_fast_path_equals_ta_at_another_price_scale(loops):
    """EURUSD quotes near 1.1 (BTCUSDT: 3,000 to 69,000); windows may span weekend gaps,
    which the math ignores."""
    frame = load_bundled_eurusd().frame
    ends = np.linspace(600, len(frame) - 1, 6).astype(int).tolist()
    windows = _windows(frame, ends, 300)
    _assert_matches_reference(window_features(windows, loops=loops), _reference(windows))


def test_scalar_and_numpy_loops_give_the_same_bits(segment, downtime):
    """The two loop flavours run the same IEEE operations in the same order: equal to the last
    bit on 300 random windows of the data, on every window through the downtime (where pandas'
    variance recomputes) and at several lengths; small batches take the scalar loops."""
    rng = np.random.default_rng(7)
    for n_bars in (MIN_BARS, 256, 700):
        ends = rng.integers(n_bars, len(segment), 300).tolist()
        ends += [downtime + k for k in range(-1, DOWNTIME_BARS + 30)]
        windows = _windows(segment, ends, n_bars)
        numpy_loops = window_features(windows, loops="numpy")
        scalar_loops = window_features(windows, loops="scalar")
        np.testing.assert_array_equal(scalar_loops, numpy_loops)
    small = windows[:SCALAR_LOOPS_MAX_WINDOWS]
    np.testing.assert_array_equal(window_features(small), window_features(small, loops="scalar"))
    with pytest.raises(ValueError, match="loops must be 'numpy' or 'scalar'"):
        window_features(small, loops="cython")  # type: ignore[arg-type]


def test_fast_path_needs_min_bars_which_is_where_every_feature_is_defined(segment):
    windows = _windows(segment, [5000, 9000], MIN_BARS)
    fast = window_features(windows)
    assert np.isfinite(fast).all()
    _assert_matches_reference(fast, _reference(windows))
    shorter = windows[:, 1:]
    assert np.isnan(_reference(shorter)).any()
    with pytest.raises(ValueError, match=f"at least {MIN_BARS} bars"):
        window_features(shorter)


@pytest.mark.parametrize("loops", LOOPS)
def test_each_family_pairs_its_reference_and_fast_kernel_for_its_own_features(segment, loops):
    """The registry: every feature comes from exactly one family, whose reference and fast
    kernel give the same features, equal at the last bar, defined from ``min_bars`` bars on
    (that fewer are not enough: ``test_fast_path_needs_min_bars...``)."""
    assert MIN_BARS == max(family.min_bars for family in FAMILIES)
    (window,) = _windows(segment, [6000], 256)
    names: list[str] = []
    for family in FAMILIES:
        for n_bars in (family.min_bars, 256):
            frame = pd.DataFrame(window[-n_bars:], columns=list(OHLCV_COLUMNS))
            reference = family.reference(PriceSeries(*(frame[c] for c in PriceSeries._fields)))
            columns = np.ascontiguousarray(window[-n_bars:, None].transpose(2, 0, 1))
            fast = family.fast(Bars(*columns[1:], LOOPS_BY_NAME[loops]))
            assert list(reference) == list(fast)
            last = [reference[k].iloc[-1] for k in fast]
            assert np.isfinite(last).all()
            np.testing.assert_allclose([fast[k][0] for k in fast], last, rtol=RTOL, atol=ATOL)
        names += list(fast)
    assert sorted(names) == sorted(FEATURE_NAMES) and len(set(names)) == len(names)


def test_compute_window_features_uses_the_fast_path_and_can_force_ta(segment):
    windows = _windows(segment, [3000, 7000, 20000], 256)
    fast = compute_window_features(windows)
    np.testing.assert_array_equal(fast, window_features(windows))
    reference = compute_window_features(windows, engine="ta")
    np.testing.assert_array_equal(reference, _reference(windows))
    _assert_matches_reference(fast, reference)


def test_a_batch_gives_the_same_rows_as_one_window_at_a_time(segment):
    windows = _windows(segment, [4000, 4500, 12000, 26000], 256)
    batch = window_features(windows)
    one_by_one = np.concatenate([window_features(w[None]) for w in windows])
    np.testing.assert_array_equal(batch, one_by_one)


def test_compute_window_features_rejects_unknown_engine_and_missing_values(segment):
    windows = _windows(segment, [3000], 256)
    with pytest.raises(ValueError, match="engine must be 'fast' or 'ta'"):
        compute_window_features(windows, engine="talib")  # type: ignore[arg-type]
    broken = windows.copy()
    broken[0, 100, OHLCV_COLUMNS.index("volume")] = np.nan
    for engine in ("fast", "ta"):
        with pytest.raises(CandleValidationError, match="missing or infinite"):
            compute_window_features(broken, engine=engine)


def test_compile_fast_path_compiles_every_kernel_a_served_window_needs():
    """A server calls ``compile_fast_path`` while it loads; a real request must then find every
    scalar kernel compiled for the arrays it passes (no compile inside the first request). And
    importing the feature code (as the API workers do, which never compute features) must not
    import numba at all: it costs ~70 MiB a process. Run in a fresh interpreter: here, earlier
    tests have compiled the kernels already."""
    probe = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        from features import compile_fast_path, contiguous_segments, OHLCV_COLUMNS
        from features import _replay
        from serving.runners import _window_features
        from training.data import load_bundled_btcusdt

        imported_at_start = "numba" in sys.modules
        compile_fast_path()
        kernels = {name: getattr(_replay, name) for name in _replay._KERNELS}
        warmed = {name: len(kernel.signatures) for name, kernel in kernels.items()}
        segment = max(contiguous_segments(load_bundled_btcusdt().frame), key=len)
        values = segment[list(OHLCV_COLUMNS)].to_numpy()
        windows = [values[end - 256 : end] for end in (3000, 5000, 7000)] + [values[:400]]
        rows = _window_features(windows)
        served = {name: len(kernel.signatures) for name, kernel in kernels.items()}
        print(json.dumps({"imported_at_start": imported_at_start, "warmed": warmed,
                          "served": served, "finite": bool(np.isfinite(rows).all())}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["imported_at_start"] is False
    # ewm, Kahan, Welford, Wilder mean and sums, each called from Python; and Welford's update
    # step, called from the Welford kernel only (compiled into it: with numba's disk cache, it
    # has no entry point of its own)
    called = {name: count for name, count in seen["warmed"].items() if name.endswith("_kernel")}
    assert len(called) == 5 and set(seen["warmed"]) - set(called) == {"_welford_update"}
    assert all(count >= 1 for count in called.values())
    assert seen["served"] == seen["warmed"] and seen["finite"]
