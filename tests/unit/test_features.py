"""The feature library: contract, no lookahead, warm-up, values against independent references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from features import (
    FEATURE_NAMES,
    LABEL_NAME,
    OHLCV_COLUMNS,
    WARMUP_BARS,
    WARMUP_TOLERANCE,
    CandleValidationError,
    compute_features,
    compute_features_segmented,
    compute_window_features,
    contiguous_segments,
    make_labels,
)
from features._warmup import HistoryCut, history_cut
from features.indicators import indicator_frame


@pytest.fixture(scope="module")
def slice_features(btc_slice) -> pd.DataFrame:
    return compute_features(btc_slice)


def test_contract_names_are_unique_ordered_and_scale_free(slice_features):
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) >= 17
    assert list(slice_features.columns) == list(FEATURE_NAMES)
    assert LABEL_NAME not in FEATURE_NAMES
    # No raw price or volume level: every feature stays within a bounded, level-free range.
    assert slice_features.abs().max().max() < 1000
    for name in ("open", "high", "low", "close", "volume"):
        assert name not in FEATURE_NAMES


def test_compute_features_drops_exactly_the_warmup_rows(btc_slice, slice_features):
    assert len(slice_features) == len(btc_slice) - WARMUP_BARS
    assert slice_features.index[0] == btc_slice["timestamp"].iloc[WARMUP_BARS]
    assert np.isfinite(slice_features.to_numpy()).all()
    # Every feature is defined well before the declared warm-up ends.
    raw = indicator_frame(btc_slice)
    first_valid = max(raw[c].first_valid_index() for c in FEATURE_NAMES)
    assert first_valid < WARMUP_BARS


def test_features_on_a_prefix_equal_features_on_the_full_data(btc_slice, slice_features):
    """Truncation test: no row ever sees a later candle (exact equality, the last row included)."""
    for cut in (WARMUP_BARS + 1, 700, 1555, 2999):
        prefix = compute_features(btc_slice.iloc[:cut])
        assert len(prefix) == cut - WARMUP_BARS
        pd.testing.assert_frame_equal(prefix, slice_features.iloc[: len(prefix)], check_exact=True)


def test_changing_future_candles_never_changes_past_features(btc_slice, slice_features):
    shocked = btc_slice.copy()
    later = shocked.index >= 2000
    shocked.loc[later, ["open", "high", "low", "close"]] *= 3.0
    shocked.loc[later, "volume"] *= 10.0
    features = compute_features(shocked)
    cutoff = shocked["timestamp"].iloc[2000]
    pd.testing.assert_frame_equal(
        features[features.index < cutoff], slice_features[slice_features.index < cutoff]
    )
    assert not features.loc[cutoff].equals(slice_features.loc[cutoff])


@pytest.fixture(scope="module")
def history(btc_frame) -> HistoryCut:
    """Every end point of the bundled data: whole-history features and WARMUP_BARS + 1 windows'."""
    return history_cut(contiguous_segments(btc_frame), warmup_bars=WARMUP_BARS)


def test_warmup_bounds_what_older_history_moves_at_every_end_point(btc_frame, history):
    """Warm-up test over every end point of the bundled data: the last candle's features from a
    window of WARMUP_BARS + 1 candles (the shortest the API takes) against those from the whole
    history before it move by at most WARMUP_TOLERANCE standard deviations of each feature. The
    50-bar EMA forgets slowest; every other feature stays 10x below the bound."""
    segments = contiguous_segments(btc_frame)
    assert len(history.full) == sum(len(s) - WARMUP_BARS for s in segments if len(s) > WARMUP_BARS)
    moves = history.moves()
    worst = moves.max()
    assert (worst <= WARMUP_TOLERANCE).all(), worst[worst > WARMUP_TOLERANCE]
    assert worst.idxmax() == "ema_dist_50" and worst.max() > WARMUP_TOLERANCE / 10
    others = worst.drop("ema_dist_50")
    assert (others <= WARMUP_TOLERANCE / 10).all(), others[others > WARMUP_TOLERANCE / 10]
    # The cut rows are what compute_features gives on that window (spot check at the worst).
    end = moves["ema_dist_50"].idxmax()
    last = int(np.flatnonzero(btc_frame["timestamp"] == end)[0])
    window = btc_frame.iloc[last - WARMUP_BARS : last + 1]
    np.testing.assert_array_equal(history.cut.loc[end], compute_features(window).iloc[-1])
    # ...and the warm-up is not padded: half of it would break the bound.
    longest = max(segments, key=len).iloc[:6000]
    half = history_cut([longest], warmup_bars=WARMUP_BARS // 2)
    assert half.moves().max().max() > WARMUP_TOLERANCE


def test_warmup_barely_moves_the_probability(history, trained_model):
    """The same cut seen through a trained model: P(up) moves by less than 1e-4 at every end
    point (measured: 1.1e-5 for this small model, 5.7e-6 for the default one, docs/features.md)."""
    full = trained_model.model.predict_proba(history.full.to_numpy())
    cut = trained_model.model.predict_proba(history.cut.to_numpy())
    assert np.abs(cut - full).max() < 1e-4


@pytest.fixture(scope="module")
def long_segment(btc_frame):
    segment = max(contiguous_segments(btc_frame), key=len).reset_index(drop=True)
    return segment.iloc[:5000]


def _ta_lib_reference(candles: pd.DataFrame) -> pd.DataFrame:
    """The same features from TA-Lib, an independent C implementation (seeded differently;
    equal to ta once both have forgotten their seeds)."""
    o, h, low, c, v = (candles[k].to_numpy() for k in OHLCV_COLUMNS)
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2, 2)
    k, d = talib.STOCH(h, low, c, fastk_period=14, slowk_period=1, slowd_period=3)
    ref = {
        **{f"ret_{n}": talib.ROC(c, n) / 100 for n in (1, 3, 6, 12, 24)},
        "rsi_14": talib.RSI(c, 14),
        "macd_line_norm": macd / c,
        "macd_signal_norm": signal / c,
        "macd_diff_norm": hist / c,
        "bb_pband_20": (c - lower) / (upper - lower),
        "bb_wband_20": (upper - lower) / middle * 100,
        "atr_norm_14": talib.ATR(h, low, c, 14) / c,
        "adx_14": talib.ADX(h, low, c, 14),
        "adx_pos_14": talib.PLUS_DI(h, low, c, 14),
        "adx_neg_14": talib.MINUS_DI(h, low, c, 14),
        "stoch_k_14": k,
        "stoch_d_14": d,
        "mfi_14": talib.MFI(h, low, c, v, 14),
        "cci_20": talib.CCI(h, low, c, 20),
        "williams_r_14": talib.WILLR(h, low, c, 14),
        **{f"ema_dist_{n}": c / talib.EMA(c, n) - 1 for n in (12, 26, 50)},
    }
    return pd.DataFrame(ref)


def test_features_match_ta_lib_after_warmup(long_segment):
    # On flat (downtime) stretches the two differ by convention (0/0: TA-Lib says 0, we say
    # neutral) and TA-Lib's running sums leave ~1e-5 of noise; compare where the market moves.
    close = long_segment["close"]
    ranged = (close.rolling(20).max() > close.rolling(20).min()) & (
        long_segment["high"].rolling(14).max() > long_segment["low"].rolling(14).min()
    )
    moving = ranged.astype(float).rolling(40).min() == 1
    moving &= long_segment.index >= 1000
    ours = indicator_frame(long_segment)[moving]
    ref = _ta_lib_reference(long_segment)[moving]
    assert len(ours) > 3900
    for name in ref.columns:
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-7, atol=1e-9, err_msg=name)


def test_obv_flow_is_the_net_signed_volume_share_over_24_bars(long_segment):
    c, v = long_segment["close"].to_numpy(), long_segment["volume"].to_numpy()
    ours = indicator_frame(long_segment)["obv_flow_24"].to_numpy()
    for t in (300, 1234, 4999):
        signed = sum(np.sign(c[i] - c[i - 1]) * v[i] for i in range(t - 23, t + 1))
        assert ours[t] == pytest.approx(signed / v[t - 23 : t + 1].sum(), rel=1e-9)


def test_hand_computed_bollinger_and_williams_and_returns():
    closes = np.tile(
        [10.0, 11, 12, 11, 13, 14, 13, 15, 16, 15, 17, 18, 17, 19, 20, 19, 21, 22, 21, 23], 3
    )
    closes[-1] = 24.0
    n = len(closes)
    frame = pd.DataFrame(
        {
            "open": closes,
            "high": closes + 1,
            "low": closes - 1,
            "close": closes,
            "volume": np.full(n, 5.0),
        }
    )
    got = indicator_frame(frame).iloc[-1]
    last20 = closes[-20:]
    mean, std = last20.mean(), last20.std(ddof=0)  # Bollinger uses the population std
    assert got["bb_pband_20"] == pytest.approx((24 - (mean - 2 * std)) / (4 * std))
    assert got["bb_wband_20"] == pytest.approx(4 * std / mean * 100)
    hh, ll = (closes[-14:] + 1).max(), (closes[-14:] - 1).min()
    assert got["williams_r_14"] == pytest.approx(-100 * (hh - 24) / (hh - ll))
    assert got["ret_3"] == pytest.approx(24 / closes[-4] - 1)
    assert got["stoch_k_14"] == pytest.approx(100 * (24 - ll) / (hh - ll))


def test_flat_market_gives_neutral_oscillators_not_nan(btc_slice):
    window = btc_slice.iloc[: WARMUP_BARS + 30].copy()
    price = window["close"].iloc[WARMUP_BARS]
    flat = window.index >= WARMUP_BARS
    window.loc[flat, ["open", "high", "low", "close"]] = price
    window.loc[flat, "volume"] = 0.0
    last = compute_features(window).iloc[-1]
    assert last["stoch_k_14"] == 50.0 and last["stoch_d_14"] == 50.0
    assert last["williams_r_14"] == -50.0
    assert last["bb_pband_20"] == 0.5
    assert last["mfi_14"] == 50.0
    assert last["ret_1"] == 0.0
    assert last["cci_20"] == 0.0


def test_outage_tails_are_answered_at_every_price_level(outage_windows):
    """Training's path (``compute_features``) on the 40 flat-tail windows: every warmed-up row
    finite, the last one equal to the window path's, CCI 0 once 20 typical prices are equal."""
    for window in outage_windows:
        features = compute_features(window)
        assert np.isfinite(features.to_numpy()).all()
        ohlcv = window[list(OHLCV_COLUMNS)].to_numpy()[None]
        np.testing.assert_array_equal(features.iloc[-1], compute_window_features(ohlcv)[0])
        assert (features["cci_20"].iloc[-11:] == 0.0).all()
        assert (features["cci_20"].iloc[-40:-30] != 0.0).all()


def test_window_features_equal_last_row_of_compute_features(btc_slice):
    n_bars = 256
    starts = [0, 17, 900, 2000]
    windows = np.stack(
        [btc_slice.iloc[s : s + n_bars][list(OHLCV_COLUMNS)].to_numpy() for s in starts]
    )
    got = compute_window_features(windows)
    for row, s in zip(got, starts, strict=True):
        expected = compute_features(btc_slice.iloc[s : s + n_bars]).iloc[-1].to_numpy()
        np.testing.assert_array_equal(row, expected)


def test_window_shorter_than_warmup_is_refused(btc_slice):
    windows = btc_slice.iloc[:WARMUP_BARS][list(OHLCV_COLUMNS)].to_numpy()[None]
    with pytest.raises(CandleValidationError, match=f"at least {WARMUP_BARS + 1} candles"):
        compute_window_features(windows)


def test_labels_look_ahead_only_as_targets_and_never_across_gaps(btc_slice):
    frame = btc_slice.iloc[:12].drop(index=[6])  # a one-bar gap between rows 5 and 7
    labels = make_labels(frame, horizon=2)
    close = frame.set_index("timestamp")["close"]
    ts = close.index
    assert labels.loc[ts[0]] == float(close.iloc[2] > close.iloc[0])
    assert np.isnan(labels.loc[ts[4]])  # its target bar 2h later is missing
    assert np.isnan(labels.loc[ts[5]])
    assert labels.loc[ts[6]] == float(close.iloc[8] > close.iloc[6])
    assert labels.iloc[-2:].isna().all()
    tie = btc_slice.iloc[:3].assign(close=[5.0, 5.0, 5.0], open=5.0, high=5.0, low=5.0)
    assert make_labels(tie, horizon=1).iloc[0] == 0.0


def test_segmented_features_never_span_a_gap(btc_frame):
    sample = btc_frame[btc_frame["timestamp"] < pd.Timestamp("2017-10-20", tz="UTC")]
    gaps = sample["timestamp"].diff() > pd.Timedelta(hours=1)
    assert gaps.sum() == 1
    features = compute_features_segmented(sample)
    gap_at = sample.loc[gaps, "timestamp"].iloc[0]
    after = features[features.index >= gap_at]
    assert after.index[0] == sample["timestamp"][sample["timestamp"] >= gap_at].iloc[WARMUP_BARS]
    assert len(features) == len(sample) - 2 * WARMUP_BARS


def test_scheduled_closures_can_be_bridged_but_gaps_split_by_default():
    from training.data import load_bundled_eurusd

    eur = load_bundled_eurusd().frame
    weekly = contiguous_segments(eur)
    assert len(weekly) == 53 and max(len(s) for s in weekly) < WARMUP_BARS
    assert compute_features_segmented(eur).empty  # no week is long enough to warm up
    bridged = contiguous_segments(eur, max_gap_bars=72)
    assert [len(s) for s in bridged] == [len(eur)]
    features = compute_features_segmented(eur, max_gap_bars=72)
    assert len(features) == len(eur) - WARMUP_BARS


def test_labels_and_segments_follow_the_candles_own_interval(btc_slice):
    minute = btc_slice.iloc[:600].copy()
    start = minute["timestamp"].iloc[0]
    minute["timestamp"] = start + pd.to_timedelta(np.arange(600), unit="min")
    minute = minute.drop(index=[300])
    assert [len(s) for s in contiguous_segments(minute)] == [300, 299]
    labels = make_labels(minute, horizon=1)
    assert np.isnan(labels.iloc[299]) and not np.isnan(labels.iloc[298])
    features = compute_features_segmented(minute)
    assert len(features) == (300 - WARMUP_BARS) + (299 - WARMUP_BARS)
