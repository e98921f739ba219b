"""Backtest modes on real candles: a stored model out of sample, walk-forward, and the CLI."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pandas as pd
import pytest

from artifact import load_model
from backtest import OutOfSampleError, backtest_stored_model, backtest_walk_forward
from backtest._walkforward import walk_forward_probabilities
from backtest.run import main
from features import BAR_INTERVAL, compute_features_segmented, make_labels
from policy import POSITION_NAMES
from training.data import Candles
from training.train import TrainConfig, fit_direction_model

TINY_FIT = TrainConfig(max_epochs=2, patience=1, seed=0)


@pytest.fixture(scope="module")
def recent_candles(btc: Candles) -> Candles:
    """Real candles from 2021-06-01 to the end of the bundled data (covers the model's range)."""
    frame = btc.frame[btc.frame["timestamp"] >= pd.Timestamp("2021-06-01", tz="UTC")]
    return Candles(frame.reset_index(drop=True), btc.report)


@pytest.fixture(scope="module")
def train_last(trained_model_tag) -> pd.Timestamp:
    return pd.Timestamp(load_model(trained_model_tag).metadata["train_range"][1])


@pytest.fixture(scope="module")
def stored_result(recent_candles, trained_model_tag):
    return backtest_stored_model(recent_candles, model_tag=trained_model_tag)


def test_stored_model_trades_only_after_its_training_period(stored_result, train_last):
    horizon = stored_result.details["label_horizon"]
    first, last = stored_result.range
    # The first traded bar earns close[first] / close[first - 1]: a close no training label saw.
    assert first == train_last + (horizon + 1) * BAR_INTERVAL
    assert last == pd.Timestamp("2022-06-14T23:00", tz="UTC")
    assert stored_result.details["mode"] == "stored_model"
    assert stored_result.strategy.bars == len(stored_result.bars) > 1000
    assert stored_result.bars["probability_up"].between(0, 1).sum() >= 1000
    assert set(stored_result.bars["signal"]) <= {"long", "flat"}


def test_stored_model_refuses_to_trade_over_its_training_period(
    recent_candles, trained_model_tag, train_last
):
    for start in (train_last, train_last + BAR_INTERVAL, pd.Timestamp("2021-08-01", tz="UTC")):
        with pytest.raises(OutOfSampleError, match="in-sample") as err:
            backtest_stored_model(recent_candles, model_tag=trained_model_tag, start=start)
        assert train_last.isoformat() in str(err.value)
    earliest = train_last + 2 * BAR_INTERVAL
    result = backtest_stored_model(
        recent_candles,
        model_tag=trained_model_tag,
        start=earliest,
        end=earliest + 99 * BAR_INTERVAL,
    )
    assert result.range == (earliest, earliest + 99 * BAR_INTERVAL)


def test_stored_model_probability_at_a_bar_uses_candles_up_to_it_only(
    stored_result, recent_candles, trained_model_tag
):
    loaded = load_model(trained_model_tag)
    model, policy = loaded.model, loaded.policy
    frame = recent_candles.frame
    bars = stored_result.bars
    position = bars["position"].to_numpy()
    for i in (0, 400, len(bars) - 1):
        row = int(frame.index[frame["timestamp"] == bars["timestamp"].iloc[i]][0])
        features = compute_features_segmented(frame.iloc[: row + 1]).iloc[[-1]]
        assert features.index[0] == bars["timestamp"].iloc[i]
        expected = model.predict_proba(features.to_numpy())[0]
        assert bars["probability_up"].iloc[i] == pytest.approx(expected, rel=1e-6)
        # The signal is the stored policy's next position from the one held (for so long).
        held = i + 1 - next((j + 1 for j in range(i, -1, -1) if position[j] != position[i]), 0)
        target = policy.next_position(expected, int(position[i]), held)
        assert bars["signal"].iloc[i] == POSITION_NAMES[target]


def test_stored_model_report_carries_the_contract(stored_result, trained_model_tag):
    report = json.loads(json.dumps(stored_result.report(), allow_nan=False))
    assert report["model_tag"] == trained_model_tag
    assert report["range"][0] == stored_result.range[0].isoformat()
    assert "open of the next candle" in report["execution"]
    assert report["train_range"] and report["holdout_range"]
    assert set(report["timings_seconds"]) == {
        "load_model",
        "features",
        "predict",
        "simulate_and_stats",
    }


def test_cli_writes_csv_json_png_and_refuses_in_sample(
    recent_candles, trained_model_tag, train_last, tmp_path, capsys
):
    data = tmp_path / "candles.csv"
    frame = recent_candles.frame.copy()
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    frame.to_csv(data, index=False)
    out = tmp_path / "out"
    assert main(["--model", trained_model_tag, "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "policy" in printed and "plain" in printed and "buy&hold" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["model_tag"] == trained_model_tag
    assert (out / "backtest.png").stat().st_size > 10_000
    bars = pd.read_csv(out / "bars.csv")
    assert len(bars) == report["strategy"]["bars"]
    assert bars["equity"].iloc[-1] == pytest.approx(report["strategy"]["final_equity"])

    code = main(
        ["--model", trained_model_tag, "--data", str(data), "--start", train_last.isoformat()]
    )
    assert code == 2
    assert "in-sample" in capsys.readouterr().err
    assert main(["--model", "btcusdt_mlp:doesnotexist", "--data", str(data)]) == 2
    assert "not in the BentoML model store" in capsys.readouterr().err


@pytest.fixture(scope="module")
def spied_walk_forward(btc_slice):
    """Walk-forward over 3,000 real candles with horizon 3, recording every fit's inputs."""
    fits: list[tuple[pd.DataFrame, pd.Series, object]] = []
    config = TrainConfig(max_epochs=2, patience=1, seed=0, label_horizon=3)

    def spy(features: pd.DataFrame, labels: pd.Series):
        fitted = fit_direction_model(features, labels, config)
        fits.append((features, labels, fitted.model))
        return fitted

    walk = walk_forward_probabilities(
        btc_slice, fit=spy, label_horizon=3, test_bars=500, min_train_rows=1200
    )
    return walk, fits


def test_walk_forward_never_trains_on_or_after_the_first_traded_row(btc_slice, spied_walk_forward):
    walk, fits = spied_walk_forward
    assert len(fits) == len(walk.folds) >= 3
    for (features, labels, _), fold in zip(fits, walk.folds, strict=True):
        assert features.index.equals(labels.index)
        # No row at or after the first traded bar, nor its signal bar ...
        assert features.index.max() < fold.trade_first - BAR_INTERVAL
        # ... nor a label that looks at a close after the signal bar's close.
        assert features.index.max() + 3 * BAR_INTERVAL <= fold.trade_first - BAR_INTERVAL
        # The labels are the real ones (make_labels on the candles), not recomputed otherwise.
        truth = make_labels(btc_slice, 3).reindex(labels.index)
        np.testing.assert_array_equal(labels.to_numpy(), truth.to_numpy())


def test_walk_forward_windows_are_contiguous_and_traded_by_their_own_model(
    btc_slice, spied_walk_forward
):
    walk, fits = spied_walk_forward
    stamps = btc_slice["timestamp"]
    assert walk.folds[0].trade_first == stamps.iloc[walk.first_row]
    assert walk.folds[-1].trade_last == stamps.iloc[walk.last_row] == stamps.iloc[-1]
    for before, after in zip(walk.folds, walk.folds[1:], strict=False):
        assert after.trade_first == before.trade_last + BAR_INTERVAL
    # No probability before the first signal bar; each window's signal bars come from its model.
    assert np.isnan(walk.probability_up[: walk.first_row - 1]).all()
    features = compute_features_segmented(btc_slice)
    for (_, _, model), fold in zip(fits, walk.folds, strict=True):
        signal_bars = features.loc[fold.trade_first - BAR_INTERVAL : fold.trade_last - BAR_INTERVAL]
        rows = stamps.searchsorted(signal_bars.index)
        np.testing.assert_allclose(
            walk.probability_up[rows], model.predict_proba(signal_bars.to_numpy()), rtol=1e-6
        )


def test_walk_forward_refuses_a_window_without_enough_history(btc_slice):
    with pytest.raises(ValueError, match="min_train_rows"):
        walk_forward_probabilities(
            btc_slice,
            fit=partial(fit_direction_model, config=TINY_FIT),
            label_horizon=1,
            test_bars=500,
            min_train_rows=1200,
            first_row=600,
        )


def test_walk_forward_backtest_end_to_end(btc_slice, btc):
    candles = Candles(btc_slice, btc.report)
    result = backtest_walk_forward(
        candles, config=TINY_FIT, test_bars=800, min_train_rows=1000, fee_bps=10, slippage_bps=2
    )
    report = json.loads(json.dumps(result.report(), allow_nan=False))
    assert report["mode"] == "walk_forward" and report["model_tag"] is None
    folds = report["folds"]
    assert folds[0]["trade_range"][0] == report["range"][0]
    assert folds[-1]["trade_range"][1] == report["range"][1]
    assert all(f["train_range"][1] < f["trade_range"][0] for f in folds)
    first_row = int(btc_slice.index[btc_slice["timestamp"] == result.range[0]][0])
    assert result.strategy.bars == len(btc_slice) - first_row


def test_cli_walk_forward_on_a_user_csv(btc_slice, tmp_path, capsys):
    data = tmp_path / "candles.csv"
    frame = btc_slice.copy()
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    frame.to_csv(data, index=False)
    out = tmp_path / "out"
    args = ["--walk-forward", "--data", str(data), "--min-train-rows", "1200"]
    args += ["--test-bars", "600", "--max-epochs", "2", "--quiet", "--no-plot", "--out", str(out)]
    assert main(args) == 0
    assert "walk-forward (3 retrains)" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "walk_forward" and len(report["folds"]) == 3
    assert report["train_config"]["max_epochs"] == 2
    with pytest.raises(SystemExit) as exc:
        main(["--walk-forward", "--service-url", "http://127.0.0.1:1"])
    assert exc.value.code == 2
