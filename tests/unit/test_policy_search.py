"""The decision policy's search (out of fold, after costs), its storage with the model, and its
use by the backtest: on real candles and real trained models."""

from __future__ import annotations

import math
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest

import training.train as train_module
from artifact import ModelContractError, load_model, model_summary, save_model
from backtest import Backtest, backtest_walk_forward
from policy import PLAIN_SOURCE, DecisionPolicy
from training.data import Candles
from training.policy_search import candidate_policies, make_stretch, score, search_policy
from training.train import TrainConfig, train_and_save

SEARCH_CONFIG = TrainConfig(max_epochs=2, patience=1, n_folds=2, seed=0)


@pytest.fixture(scope="module")
def spied_training(small_training_candles: Candles, tmp_path_factory, monkeypatch_module):
    """A real (short) training run recording every input the policy search was given."""
    calls: list[dict] = []
    real = train_module.make_stretch

    def spy(name, candles, probability_up, *, last_price_time):
        stretch = real(name, candles, probability_up, last_price_time=last_price_time)
        calls.append(
            {
                "candles": candles,
                "probability_up": probability_up.copy(),
                "last_price_time": last_price_time,
                "stretch": stretch,
            }
        )
        return stretch

    monkeypatch_module.setattr(train_module, "make_stretch", spy)
    result = train_and_save(
        SEARCH_CONFIG,
        small_training_candles,
        report_dir=tmp_path_factory.mktemp("search-report"),
        plots=False,
        generalisation=False,
    )
    return result, calls


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_policy_search_sees_only_out_of_fold_rows_and_no_price_after_the_fit(spied_training):
    result, calls = spied_training
    meta = result.metadata
    train_last = pd.Timestamp(meta["train_range"][1])
    holdout_first = pd.Timestamp(meta["holdout_range"][0])
    assert train_last < holdout_first
    folds = meta["metrics"]["folds"]
    assert len(calls) == len(folds) == SEARCH_CONFIG.n_folds
    for call, fold in zip(calls, folds, strict=True):
        index = call["probability_up"].index
        # Out of fold: the probabilities are the fold model's on its own test block only.
        assert index.min() == pd.Timestamp(fold["test_range"][0])
        assert index.max() == pd.Timestamp(fold["test_range"][1])
        assert pd.Timestamp(fold["train_range"][1]) < index.min()
        assert call["last_price_time"] == train_last
        stretch = call["stretch"]
        assert stretch.last_price_time <= train_last < holdout_first
        assert stretch.signal_times.max() < stretch.last_price_time
        # No later price matters: poison every candle after the fit's end, same stretch.
        poisoned = call["candles"].copy()
        later = poisoned["timestamp"] > train_last
        assert later.any()
        poisoned.loc[later, ["open", "high", "low", "close"]] = 1e9
        again = make_stretch(
            "again", poisoned, call["probability_up"], last_price_time=call["last_price_time"]
        )
        np.testing.assert_array_equal(again.bar_return, stretch.bar_return)
        np.testing.assert_array_equal(again.probability_up, stretch.probability_up)
    stored = meta["decision_policy"]
    assert pd.Timestamp(stored["search_range"][1]) <= train_last
    assert [f["last_price_time"] for f in stored["folds"]] == [
        c["stretch"].last_price_time.isoformat() for c in calls
    ]


def test_trained_model_stores_its_policy_with_provenance(spied_training):
    result, _ = spied_training
    stored = result.metadata["decision_policy"]
    assert stored["candidates"] == len(candidate_policies()) == 105
    assert stored["fee_bps"] == SEARCH_CONFIG.fee_bps and stored["slippage_bps"] == 2.0
    assert "log growth" in stored["objective"] and "searched" in stored["source"]
    validation = stored["validation"]
    assert set(validation) == {"policy", "plain_threshold", "buy_and_hold", "cash"}
    assert stored["beats_cash_after_costs"] == (validation["policy"]["log_growth"] > 0)
    # The chosen policy is the best candidate by the objective.
    best = max(r["log_growth"] for r in stored["top"])
    assert validation["policy"]["log_growth"] == pytest.approx(best)
    loaded = load_model(result.tag)
    assert loaded.policy == DecisionPolicy.from_dict(stored["policy"])
    assert loaded.policy_source == stored["source"]
    summary = model_summary(loaded)["policy"]
    assert summary["source"] == stored["source"] and summary["rule"] == stored["rule"]


def test_search_scores_exactly_what_the_backtest_earns(btc_slice):
    rng = np.random.default_rng(1)
    stamps = btc_slice["timestamp"]
    probability = pd.Series(
        np.clip(rng.normal(0.5, 0.05, 1500), 0.01, 0.99), index=pd.DatetimeIndex(stamps[500:2000])
    )
    stretch = make_stretch("s", btc_slice, probability, last_price_time=stamps.iloc[2100])
    policy = DecisionPolicy(entry=0.53, exit=0.49, min_hold_bars=6)
    scored = score(policy, stretch, fee_bps=10, slippage_bps=2)
    result = Backtest(btc_slice, probability, fee_bps=10, slippage_bps=2, policy=policy).run(
        start=stamps.iloc[501], end=stamps.iloc[2000]
    )
    returns = result.bars["strategy_return"].to_numpy()
    assert scored["log_growth"] == pytest.approx(np.log1p(returns).sum(), rel=1e-12)
    assert scored["turnover"] == result.strategy.turnover
    assert scored["trades"] == result.strategy.trades


def test_search_prefers_holding_through_noise_when_fees_eat_the_flips():
    """Prices rise 0.1 % a bar; P(up) alternates around 0.5, so the plain rule flips every bar
    and pays 12 bps a change, while a 24-bar minimum hold stays long and earns the trend."""
    n = 400
    opens = 100 * 1.001 ** np.arange(n)
    candles = pd.DataFrame(
        {
            "timestamp": pd.date_range("2022-01-01", periods=n, freq="h", tz="UTC"),
            "open": opens,
            "high": opens * 1.002,
            "low": opens * 0.999,
            "close": opens * 1.001,
            "volume": 1.0,
        }
    )
    p = pd.Series(np.where(np.arange(n) % 2 == 0, 0.55, 0.45), index=candles["timestamp"])
    stretch = make_stretch("s", candles, p.iloc[:-5], last_price_time=candles["timestamp"].iloc[-1])
    plain, patient = (
        DecisionPolicy.plain(0.5),
        DecisionPolicy(entry=0.5, exit=0.5, min_hold_bars=24),
    )
    costly = search_policy(
        [stretch], fee_bps=10, slippage_bps=2, plain=plain, candidates=[plain, patient]
    )
    assert costly.chosen == patient and costly.candidates == 2
    meta = costly.metadata()
    assert meta["beats_cash_after_costs"]
    assert (
        meta["validation"]["plain_threshold"]["total_return"]
        < 0
        < meta["validation"]["policy"]["total_return"]
    )
    assert (
        costly.totals(plain)["turnover_per_year"] > 10 * costly.totals(patient)["turnover_per_year"]
    )


def test_model_saved_before_policies_loads_with_the_plain_threshold(trained_model):
    original = bentoml.models.get(trained_model.tag)
    metadata = {k: v for k, v in original.info.metadata.items() if k != "decision_policy"}
    report = {f"report/{p.name}": p for p in (Path(original.path) / "report").iterdir()}
    old = save_model(trained_model.model, metadata=metadata, extra_files=report)
    try:
        loaded = load_model(old)
        assert loaded.policy == DecisionPolicy.plain(0.5)
        assert loaded.policy_source == PLAIN_SOURCE
        assert model_summary(loaded)["policy"]["source"] == PLAIN_SOURCE
    finally:
        bentoml.models.delete(old)


def test_model_with_an_invalid_stored_policy_is_refused(trained_model):
    original = bentoml.models.get(trained_model.tag)
    metadata = dict(original.info.metadata)
    metadata["decision_policy"] = {"policy": {"entry": 0.5, "exit": 0.7}, "source": "hand-made"}
    report = {f"report/{p.name}": p for p in (Path(original.path) / "report").iterdir()}
    broken = save_model(trained_model.model, metadata=metadata, extra_files=report)
    try:
        with pytest.raises(ModelContractError, match="invalid decision policy: .*exit"):
            load_model(broken)
    finally:
        bentoml.models.delete(broken)


def test_backtest_trades_the_policy_and_compares_it_with_plain_hold_and_cash(btc_slice):
    rng = np.random.default_rng(5)
    probability = np.clip(rng.normal(0.5, 0.05, len(btc_slice)), 0.01, 0.99)
    policy = DecisionPolicy(entry=0.55, exit=0.5, min_hold_bars=12)
    result = Backtest(btc_slice, probability, fee_bps=10, slippage_bps=2, policy=policy).run()
    expected = policy.positions(probability[: len(btc_slice)])[:-1]
    np.testing.assert_array_equal(result.bars["position"].to_numpy(), expected)
    lines = result.comparison
    assert list(lines) == [
        "policy",
        "policy_before_costs",
        "plain_threshold",
        "plain_threshold_before_costs",
        "buy_and_hold_after_costs",
        "buy_and_hold",
        "cash",
    ]
    assert lines["policy"] == result.strategy and lines["buy_and_hold"] == result.buy_and_hold
    assert lines["cash"].total_return == 0.0 and lines["cash"].turnover == 0.0
    assert lines["plain_threshold"].turnover > 3 * lines["policy"].turnover
    assert lines["policy_before_costs"].total_return > lines["policy"].total_return
    # Buy-and-hold runs through the same engine: an always-long signal earns exactly it.
    always = Backtest(btc_slice, np.ones(len(btc_slice)), fee_bps=10, slippage_bps=2).run()
    assert always.strategy.total_return == pytest.approx(
        lines["buy_and_hold_after_costs"].total_return, rel=1e-12
    )
    reading = result.reading()
    assert f"{100 * lines['policy'].total_return:+.1f} %" in reading[0]
    beats = "better than cash" if lines["policy"].total_return > 0 else "worse than cash"
    assert beats in reading[1]
    report = result.report()
    assert report["policy"] == policy.to_dict() and report["reading"] == reading
    assert math.isclose(
        report["comparison"]["plain_threshold"]["total_return"],
        lines["plain_threshold"].total_return,
    )


def test_walk_forward_policy_of_each_window_is_searched_on_earlier_windows_only(btc_slice, btc):
    config = TrainConfig(max_epochs=2, patience=1, seed=0)
    result = backtest_walk_forward(
        Candles(btc_slice, btc.report), config=config, test_bars=500, min_train_rows=1000
    )
    schedule = result.policy
    searches = result.details["policy_searches"]
    folds = result.details["folds"]
    assert schedule.policies[0] is None  # window 1: no earlier evidence, cash
    assert not result.bars["position"].iloc[:500].any()
    assert len(searches) == len(folds) - 1
    for search, fold in zip(searches, folds[1:], strict=True):
        trade_first = pd.Timestamp(fold["trade_range"][0])
        assert pd.Timestamp(search["signal_bar"]) < trade_first
        assert pd.Timestamp(search["search_range"][1]) <= pd.Timestamp(search["signal_bar"])
    assert result.report()["comparison"]["plain_threshold"]["bars"] == result.strategy.bars
