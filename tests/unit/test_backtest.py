"""The backtest engine and its statistics, on constructed signals with hand-computed answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from backtest import BARS_PER_YEAR, EXECUTION, Backtest

FEE_BPS, SLIPPAGE_BPS = 10.0, 5.0
COST = (FEE_BPS + SLIPPAGE_BPS) / 1e4


def _candles(opens: list[float], last_close: float, *, start: str = "2022-01-01") -> pd.DataFrame:
    """Hourly candles whose close is the next open (as on Binance), the last one ``last_close``."""
    closes = [*opens[1:], last_close]
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=len(opens), freq="h", tz="UTC"),
            "open": opens,
            "high": np.maximum(opens, closes) * 1.01,
            "low": np.minimum(opens, closes) * 0.99,
            "close": closes,
            "volume": 1.0,
        }
    )


@pytest.fixture(scope="module")
def random_probability(btc_slice) -> np.ndarray:
    return np.random.default_rng(7).random(len(btc_slice))


@pytest.fixture(scope="module")
def random_result(btc_slice, random_probability):
    return Backtest(btc_slice, random_probability, fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS).run()


def test_always_long_equals_buy_and_hold_minus_the_entry_fee(btc_slice):
    result = Backtest(
        btc_slice, np.ones(len(btc_slice)), fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS
    ).run()
    bh = result.buy_and_hold
    # Buy-and-hold over the same bars, computed from the raw candles: from the open of the first
    # traded bar (row 1) to the close of the last candle.
    raw_bh = btc_slice["close"].iloc[-1] / btc_slice["open"].iloc[1] - 1
    assert bh.total_return == pytest.approx(raw_bh, rel=1e-12)
    assert result.strategy.total_return == pytest.approx((1 - COST) * (1 + bh.total_return) - 1)
    assert result.strategy.fees_paid == pytest.approx(FEE_BPS / 1e4)
    assert result.strategy.slippage_paid == pytest.approx(SLIPPAGE_BPS / 1e4)
    assert result.strategy.trades == 1 and result.strategy.exposure == 1.0
    assert result.strategy.turnover == 1.0


def test_always_flat_is_zero(btc_slice):
    result = Backtest(btc_slice, np.zeros(len(btc_slice)), fee_bps=FEE_BPS).run()
    s = result.strategy
    assert (result.bars["equity"] == 1.0).all()
    assert s.total_return == 0.0 and s.cagr == 0.0 and s.max_drawdown == 0.0
    assert s.trades == 0 and s.exposure == 0.0 and s.fees_paid == 0.0 and s.turnover == 0.0
    assert s.sharpe is None or math.isnan(s.sharpe)  # zero volatility: undefined, not 0
    assert result.report()["strategy"]["sharpe"] is None
    assert result.buy_and_hold.total_return != 0.0


def test_alternating_signal_gives_the_hand_computed_return():
    # Opens 100, 110, 99, 108.9, 98.01; the last close 107.811. Returns of the traded rows 1..4
    # (next open / open, the last bar close / open): -10%, +10%, -10%, +10%.
    candles = _candles([100.0, 110.0, 99.0, 108.9, 98.01], 107.811)
    # Signals at rows 0..3: long, flat, long, flat -> positions at rows 1..4: 1, 0, 1, 0.
    probability = np.array([0.9, 0.1, 0.9, 0.1, 0.9])
    result = Backtest(candles, probability, fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS).run()
    bars = result.bars
    assert bars["position"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert bars["bar_return"].to_numpy() == pytest.approx([-0.1, 0.1, -0.1, 0.1])
    # Row 1: buy (pay COST), lose 10%. Row 2: sell (pay COST). Row 3: buy, lose 10%. Row 4: sell.
    expected_equity = (1 - COST) * 0.9 * (1 - COST) * (1 - COST) * 0.9 * (1 - COST)
    assert result.strategy.final_equity == pytest.approx(expected_equity, rel=1e-12)
    assert result.strategy.trades == 2 and result.strategy.win_rate == 0.0
    assert result.strategy.avg_trade_return == pytest.approx((1 - COST) ** 2 * 0.9 - 1)
    assert result.strategy.turnover == 4.0
    assert result.buy_and_hold.final_equity == pytest.approx(0.9 * 1.1 * 0.9 * 1.1)
    # The same signals one bar earlier catch every +10% bar instead: the timing is what matters.
    early = Backtest(candles, np.roll(probability, -1), fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS)
    # Positions 0, 1, 0, 1: buy, sell, buy (still open at the end): three costs.
    assert early.run().strategy.final_equity == pytest.approx((1 - COST) ** 3 * 1.1 * 1.1)


def test_long_short_always_short_earns_the_inverse_of_each_bar():
    candles = _candles([100.0, 110.0, 99.0, 108.9], 98.01)
    result = Backtest(
        candles, np.zeros(4), fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS, allow_short=True
    ).run()
    assert result.bars["position"].tolist() == [-1.0, -1.0, -1.0]
    assert result.bars["signal"].tolist() == ["short", "short", "short"]
    assert result.strategy.final_equity == pytest.approx((1 - COST) * 1.1 * 0.9 * 1.1)


def test_a_long_to_short_flip_pays_twice():
    candles = _candles([100.0, 110.0, 99.0], 108.9)
    probability = np.array([0.9, 0.1, 0.5])
    result = Backtest(
        candles, probability, fee_bps=FEE_BPS, slippage_bps=SLIPPAGE_BPS, allow_short=True
    ).run()
    assert result.bars["turnover"].tolist() == [1.0, 2.0]
    assert result.strategy.final_equity == pytest.approx((1 - COST) * 0.9 * (1 - 2 * COST) * 0.9)


def test_position_is_the_previous_bars_signal_so_a_peeking_oracle_earns_nothing_special(
    btc_slice,
):
    exit_price = btc_slice["open"].shift(-1).fillna(btc_slice["close"])
    bars_up = (exit_price > btc_slice["open"]).to_numpy(dtype="float64")
    # Honest use of hindsight: "bar t went up" is known at t's close and trades bar t+1.
    honest = Backtest(btc_slice, bars_up, fee_bps=0, slippage_bps=0).run()
    np.testing.assert_array_equal(honest.bars["position"].to_numpy(), bars_up[:-1])
    # Peeking: the same signal shifted one bar earlier knows each bar's direction in advance.
    peeked = Backtest(btc_slice, np.roll(bars_up, -1), fee_bps=0, slippage_bps=0).run()
    r = peeked.bars["bar_return"].to_numpy()
    assert peeked.strategy.final_equity == pytest.approx(np.prod(1 + np.maximum(r, 0)), rel=1e-9)
    assert peeked.strategy.final_equity > 100 * max(honest.strategy.final_equity, 1.0)
    assert peeked.strategy.win_rate == 1.0


def test_future_candles_and_signals_do_not_change_past_bars(btc_slice, random_probability):
    cut = 1500
    base = Backtest(btc_slice, random_probability).run()
    shocked_candles = btc_slice.copy()
    for col in ("open", "high", "low", "close"):
        shocked_candles.loc[cut + 1 :, col] *= 3.0
    shocked_probability = random_probability.copy()
    shocked_probability[cut:] = 1 - shocked_probability[cut:]
    shocked = Backtest(shocked_candles, shocked_probability).run()
    # Row cut (traded row cut - 1) exits at open[cut] and its position comes from signal cut-1.
    pd.testing.assert_frame_equal(base.bars.iloc[: cut - 1], shocked.bars.iloc[: cut - 1])
    assert not base.bars.iloc[cut:].equals(shocked.bars.iloc[cut:])


def test_a_position_is_held_across_a_gap_until_the_next_candle(btc_slice):
    candles = btc_slice.iloc[:50].drop(index=range(20, 23)).reset_index(drop=True)
    result = Backtest(candles, np.ones(len(candles)), fee_bps=0, slippage_bps=0).run()
    row = result.bars.index[result.bars["timestamp"] == btc_slice["timestamp"].iloc[19]][0]
    assert result.bars["exit_price"].iloc[row] == btc_slice["open"].iloc[23]
    assert result.buy_and_hold.total_return == pytest.approx(
        btc_slice["close"].iloc[49] / btc_slice["open"].iloc[1] - 1
    )


def test_missing_probabilities_stay_flat(btc_slice):
    stamps = btc_slice["timestamp"]
    probability = pd.Series(1.0, index=pd.DatetimeIndex(stamps.iloc[100:200]))
    result = Backtest(btc_slice, probability).run()
    position = result.bars["position"].to_numpy()
    assert position[100:200].all() and not position[:100].any() and not position[200:].any()
    assert result.report()["bars_without_signal"] == len(btc_slice) - 1 - 100


def _loop_drawdown(equity: list[float]) -> tuple[float, int]:
    """Deepest drawdown and longest peak-to-recovery stretch, one point at a time."""
    points = [1.0, *equity]
    worst, longest = 0.0, 0
    peak, peak_at = points[0], 0
    for k in range(1, len(points)):
        if points[k] >= peak:
            if peak_at < k - 1:  # the points in between were under water: recovered at k
                longest = max(longest, k - peak_at)
            peak, peak_at = points[k], k
        else:
            worst = min(worst, points[k] / peak - 1)
    if points[-1] < peak:
        longest = max(longest, len(points) - 1 - peak_at)
    return worst, longest


def _loop_trades(positions: list[float], bar_returns: list[float]) -> list[float]:
    """Each run of equal non-zero positions, compounded, with entry and (if closed) exit cost."""
    trades, i, n = [], 0, len(positions)
    while i < n:
        if positions[i] == 0:
            i += 1
            continue
        j, growth = i, 1 - COST
        while j < n and positions[j] == positions[i]:
            growth *= 1 + positions[j] * bar_returns[j]
            j += 1
        if j < n:
            growth *= 1 - COST
        trades.append(growth - 1)
        i = j
    return trades


def test_stats_match_independent_loop_computations(random_result):
    bars, s = random_result.bars, random_result.strategy
    returns = bars["strategy_return"].tolist()
    equity, value = [], 1.0
    for r in returns:
        value *= 1 + r
        equity.append(value)
    assert s.final_equity == pytest.approx(value, rel=1e-12)
    worst, longest = _loop_drawdown(equity)
    assert s.max_drawdown == pytest.approx(worst, rel=1e-12)
    assert s.max_drawdown_duration_bars == longest
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    assert s.sharpe == pytest.approx(mean / math.sqrt(var) * math.sqrt(8760), rel=1e-9)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    assert s.sortino == pytest.approx(mean / downside * math.sqrt(8760), rel=1e-9)
    assert s.annual_volatility == pytest.approx(math.sqrt(var * 8760), rel=1e-9)
    hours = len(bars)  # btc_slice is gap-free
    assert s.cagr == pytest.approx(value ** (24 * 365 / hours) - 1, rel=1e-9)
    assert BARS_PER_YEAR == 8760

    positions = bars["position"].tolist()
    trades = _loop_trades(positions, bars["bar_return"].tolist())
    assert s.trades == len(trades)
    assert s.win_rate == pytest.approx(sum(t > 0 for t in trades) / len(trades))
    assert s.avg_trade_return == pytest.approx(sum(trades) / len(trades), rel=1e-9)
    assert s.exposure == pytest.approx(sum(p != 0 for p in positions) / len(positions))


def test_drawdown_duration_is_measured_until_recovery():
    # Down for two bars, back above the start, then down to the end (a deeper drawdown).
    candles = _candles([100.0, 110.0, 100.0, 95.0, 120.0, 110.0], 100.0)
    result = Backtest(candles, np.ones(6), fee_bps=0, slippage_bps=0).run()
    # Equity after bars 1..5: 0.909, 0.864, 1.091, 1.0, 0.909 (relative to the first open 110).
    # Stretches below a peak: start (1.0) -> recovery at bar 3: 3 bars; 1.091 -> end: 2 bars.
    assert result.strategy.max_drawdown_duration_bars == 3
    assert result.strategy.max_drawdown_duration_hours == 3.0
    assert result.strategy.max_drawdown == pytest.approx(100 / 120 - 1)  # deeper than 95 / 110


def test_csv_lets_anyone_recompute_the_report(random_result, tmp_path):
    paths = random_result.save(tmp_path, plot=True)
    assert paths["figure"].stat().st_size > 10_000
    bars = pd.read_csv(paths["bars"])
    report = json.loads(paths["report"].read_text())
    assert list(bars.columns[:8]) == [
        "timestamp",
        "close",
        "probability_up",
        "signal",
        "position",
        "bar_return",
        "strategy_return",
        "equity",
    ]
    for key in ("strategy", "buy_and_hold", "fee_bps", "slippage_bps", "execution", "model_tag"):
        assert key in report
    assert report["execution"] == EXECUTION
    assert report["range"] == [bars["timestamp"].iloc[0], bars["timestamp"].iloc[-1]]
    for key in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "win_rate"):
        assert key in report["strategy"] and key in report["buy_and_hold"]
    # Recompute from the CSV alone: the position is the previous row's signal, the bar return
    # runs from this open to the next open, costs are turnover x (fee + slippage).
    previous_signal = bars["signal"].shift(1).map({"long": 1.0, "flat": 0.0, "short": -1.0})
    np.testing.assert_array_equal(bars["position"].iloc[1:], previous_signal.iloc[1:])
    np.testing.assert_allclose(bars["bar_return"], bars["exit_price"] / bars["open"] - 1, rtol=1e-9)
    np.testing.assert_allclose(bars["exit_price"].iloc[:-1], bars["open"].iloc[1:], rtol=1e-12)
    turnover = bars["position"].diff().abs().fillna(bars["position"].abs().iloc[0])
    step = (1 - turnover * COST) * (1 + bars["position"] * bars["bar_return"])
    np.testing.assert_allclose(bars["equity"], step.cumprod(), rtol=1e-9)
    assert report["strategy"]["total_return"] == pytest.approx(step.prod() - 1, rel=1e-9)


def test_table_names_every_column(random_result):
    table = random_result.table()
    for column in ("policy", "plain", "buy&hold", "cash", "(no costs)", "Sharpe"):
        assert column in table


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fee_bps": -1.0}, "fee_bps"),
        ({"slippage_bps": float("nan")}, "slippage_bps"),
        ({"threshold": 1.0}, "threshold"),
        ({"short_threshold": 0.4}, "allow_short"),
        ({"allow_short": True, "short_threshold": 0.6}, "short_threshold"),
    ],
)
def test_bad_settings_are_rejected(btc_slice, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Backtest(btc_slice, np.ones(len(btc_slice)), **kwargs)


def test_bad_probabilities_and_ranges_are_rejected(btc_slice):
    n = len(btc_slice)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Backtest(btc_slice, np.full(n, 1.5))
    with pytest.raises(ValueError, match="one value per candle"):
        Backtest(btc_slice, np.ones(n - 1))
    foreign = pd.Series(0.5, index=pd.DatetimeIndex(["2030-01-01"], tz="UTC"))
    with pytest.raises(ValueError, match="not candles"):
        Backtest(btc_slice, foreign)
    backtest = Backtest(btc_slice, np.ones(n))
    with pytest.raises(ValueError, match="no earlier candle"):
        backtest.run(start=btc_slice["timestamp"].iloc[0])
    with pytest.raises(ValueError, match="no UTC offset"):
        backtest.run(start="2021-11-01 00:00")
    with pytest.raises(ValueError, match="no candles to trade"):
        backtest.run(start="2021-12-01T00:00Z", end="2021-11-01T00:00Z")


def test_start_and_end_select_the_traded_bars(btc_slice):
    result = Backtest(btc_slice, np.ones(len(btc_slice))).run(
        start="2021-11-01T00:00Z", end="2021-11-02T23:00Z"
    )
    assert len(result.bars) == 48
    assert result.range[0] == pd.Timestamp("2021-11-01", tz="UTC")
    # The position of the first traded bar came from the signal of the bar before it.
    assert result.bars["position"].iloc[0] == 1.0
    assert result.strategy.total_return == pytest.approx(
        (1 - result.fee_bps / 1e4 - result.slippage_bps / 1e4)
        * (1 + result.buy_and_hold.total_return)
        - 1
    )
