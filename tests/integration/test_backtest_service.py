"""The served model trades exactly like the offline one: a backtest through a real ``bentoml
serve`` (HTTP) and ``bentoml serve-grpc`` process on loopback, against the offline backtest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from artifact import ModelContractError, load_model
from backtest import backtest_stored_model
from backtest.run import main
from client import GrpcClient, HttpClient, ServiceError
from features import BAR_INTERVAL, WARMUP_BARS
from policy import POSITIONS, next_bars_held
from training.data import Candles

pytestmark = pytest.mark.integration

TRADED_BARS = 200


@pytest.fixture(scope="module")
def candles(btc) -> Candles:
    frame = btc.frame[btc.frame["timestamp"] >= pd.Timestamp("2021-06-01", tz="UTC")]
    return Candles(frame.reset_index(drop=True), btc.report)


@pytest.fixture(scope="module")
def traded_range(trained_model_tag) -> tuple[pd.Timestamp, pd.Timestamp]:
    train_last = pd.Timestamp(load_model(trained_model_tag).metadata["train_range"][1])
    start = train_last + 2 * BAR_INTERVAL
    return start, start + (TRADED_BARS - 1) * BAR_INTERVAL


@pytest.fixture(scope="module")
def offline_backtest(candles, trained_model_tag, traded_range):
    return backtest_stored_model(
        candles, model_tag=trained_model_tag, start=traded_range[0], end=traded_range[1]
    )


def _assert_trades_like_offline(served, offline_backtest, tag):
    assert served.model_tag == offline_backtest.model_tag == tag
    pd.testing.assert_series_equal(served.bars["position"], offline_backtest.bars["position"])
    pd.testing.assert_series_equal(served.bars["signal"], offline_backtest.bars["signal"])
    assert served.strategy.total_return == pytest.approx(
        offline_backtest.strategy.total_return, abs=1e-12
    )
    pd.testing.assert_series_equal(
        served.bars["probability_up"], offline_backtest.bars["probability_up"], atol=1e-5, rtol=0
    )
    parity = served.details["service_parity"]
    assert parity["signal_disagreements_vs_offline"] == 0
    assert parity["bars_rechecked_on_same_windows"] >= 64
    assert parity["max_abs_probability_diff_on_same_windows"] < 1e-6


def test_backtest_through_http_trades_like_the_offline_model(
    http_url, candles, trained_model_tag, traded_range, offline_backtest
):
    with HttpClient(http_url) as service:
        served = backtest_stored_model(
            candles, service=service, start=traded_range[0], end=traded_range[1]
        )
    _assert_trades_like_offline(served, offline_backtest, trained_model_tag)


def test_backtest_through_grpc_trades_like_the_offline_model(
    grpc_address, candles, trained_model_tag, traded_range, offline_backtest
):
    with GrpcClient(grpc_address) as service:
        served = backtest_stored_model(
            candles, service=service, start=traded_range[0], end=traded_range[1]
        )
    _assert_trades_like_offline(served, offline_backtest, trained_model_tag)


def test_service_route_refuses_another_model_and_in_sample_bars(
    http_url, candles, trained_model_tag, traded_range, tmp_path, capsys
):
    with HttpClient(http_url) as service, pytest.raises(ModelContractError, match="serves"):
        backtest_stored_model(candles, service=service, model_tag="btcusdt_mlp:someotherversion")
    in_sample = (traded_range[0] - 2 * BAR_INTERVAL).isoformat()
    assert main(["--service-url", http_url, "--start", in_sample, "--out", str(tmp_path)]) == 2
    assert "in-sample" in capsys.readouterr().err
    end = traded_range[0] + 23 * BAR_INTERVAL
    args = [
        "--service-url",
        http_url,
        "--end",
        end.isoformat(),
        "--out",
        str(tmp_path),
        "--no-plot",
    ]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model_tag"] == trained_model_tag
    assert report["service_parity"]["signal_disagreements_vs_offline"] == 0


# --- the decision policy: the service's signal, chained, equals the backtest's positions --------

POLICY_WINDOWS = 50


@pytest.fixture(scope="module")
def policy_stretch(candles, trained_model_tag, offline_holdout):
    """The 50 consecutive holdout bars (starting flat) over which the stored policy changes
    position most often, and the stored-model backtest of exactly those bars."""
    policy = load_model(trained_model_tag).policy
    probability = offline_holdout.bars["probability_up"].to_numpy()
    stamps = pd.DatetimeIndex(candles.frame["timestamp"])
    first_row = int(stamps.get_loc(offline_holdout.bars["timestamp"].iloc[0]))
    changes = []
    for start in range(1, len(probability) - POLICY_WINDOWS, 5):
        span = (
            stamps[first_row + start + POLICY_WINDOWS - 1]
            - stamps[first_row + start - 2 - WARMUP_BARS]
        )
        if span != (POLICY_WINDOWS + WARMUP_BARS + 1) * BAR_INTERVAL:
            continue  # a gap: a live client could not send these windows
        held = policy.positions(probability[start - 1 : start - 1 + POLICY_WINDOWS])
        changes.append((int(np.abs(np.diff(held, prepend=0)).sum()), start))
    count, start = max(changes)
    assert count >= 2, "the stored policy must trade in the stretch for the test to mean much"
    traded = offline_holdout.bars["timestamp"]
    first, last = traded.iloc[start], traded.iloc[start + POLICY_WINDOWS - 1]
    result = backtest_stored_model(candles, model_tag=trained_model_tag, start=first, end=last)
    assert len(result.bars) == POLICY_WINDOWS
    return result


@pytest.fixture(scope="module")
def offline_holdout(candles, trained_model_tag):
    return backtest_stored_model(candles, model_tag=trained_model_tag)


def _served_positions(client, candles: Candles, bars: pd.DataFrame) -> list[float]:
    """Ask for each bar's position as a live client does: the window ending at the bar before
    it, carrying the previous answer's signal as ``position`` (and how long it was held)."""
    frame = candles.frame
    rows = frame.index[frame["timestamp"].isin(bars["timestamp"])].to_numpy() - 1
    position, held, out = "flat", None, []
    for row in rows:
        window = frame.iloc[row - WARMUP_BARS : row + 1]
        answer = client.predict(window, position=position, bars_held=held)
        held = next_bars_held(position, held, answer["signal"])
        position = answer["signal"]
        out.append(POSITIONS[position])
    return out


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_service_signals_chained_by_position_equal_the_backtest_positions(
    transport, request, candles, policy_stretch, trained_model_tag
):
    address = request.getfixturevalue("http_url" if transport == "http" else "grpc_address")
    client = HttpClient(address) if transport == "http" else GrpcClient(address)
    with client:
        info = client.model_info()
        served = _served_positions(client, candles, policy_stretch.bars)
    stored = load_model(trained_model_tag)
    assert info["policy"]["source"] == stored.policy_source
    assert info["policy"]["min_hold_bars"] == stored.policy.min_hold_bars
    assert served == policy_stretch.bars["position"].tolist()


def test_short_position_is_refused_naming_the_field_when_the_policy_is_long_flat(
    http_url, grpc_address, candles
):
    window = candles.frame.iloc[-(WARMUP_BARS + 1) :]
    with HttpClient(http_url) as http, GrpcClient(grpc_address) as grpc_client:
        assert http.model_info()["policy"]["positions"] == ["flat", "long"]
        for client, status in ((http, 400), (grpc_client, "INVALID_ARGUMENT")):
            with pytest.raises(ServiceError) as err:
                client.predict(window, position="short")
            assert err.value.status == status
            assert err.value.error.startswith("position: position 'short' is not allowed")
            with pytest.raises(ServiceError) as err:
                client.predict_batch([window, window], positions=["flat", "short"])
            assert err.value.error.startswith("windows[1].position:")
        # No position is flat: the same answer as an explicit "flat".
        assert http.predict(window) == http.predict(window, position="flat")
