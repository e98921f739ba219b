"""The served model trades exactly like the offline one: a backtest through a real ``bentoml
serve`` (HTTP) and ``bentoml serve-grpc`` process on loopback, against the offline backtest."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from artifact import ModelContractError, load_model
from backtest import backtest_stored_model
from backtest.run import main
from client import GrpcClient, HttpClient
from devtools import free_port, isolated_home, running_server
from features import BAR_INTERVAL
from tests.servers import server_env
from training.data import Candles

pytestmark = pytest.mark.integration

TRADED_BARS = 200


@pytest.fixture(scope="module")
def http_url(trained_model_tag, tmp_path_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = server_env(os.environ["BENTOML_HOME"], trained_model_tag)
    args = ["serve", "service:svc", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path_factory.mktemp("backtest-http-server") / "server.log"
    with (
        HttpClient(url) as probe,
        running_server(args + ["--api-workers", "1"], env, log, probe.is_ready),
    ):
        yield url


@pytest.fixture(scope="module")
def grpc_address(trained_model_tag, tmp_path_factory):
    port = free_port()
    base = tmp_path_factory.mktemp("backtest-grpc-server")
    home = isolated_home(base / "home", os.environ["BENTOML_HOME"])
    env = server_env(
        home, trained_model_tag, {"api_server": {"grpc": {"metrics": {"port": free_port()}}}}
    )
    args = ["serve-grpc", "service:svc", "--host", "127.0.0.1", "--port", str(port)]
    with GrpcClient(f"127.0.0.1:{port}") as probe:
        with running_server(
            args + ["--api-workers", "1"], env, base / "server.log", probe.is_ready
        ):
            yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def candles(btc) -> Candles:
    frame = btc.frame[btc.frame["timestamp"] >= pd.Timestamp("2021-06-01", tz="UTC")]
    return Candles(frame.reset_index(drop=True), btc.report)


@pytest.fixture(scope="module")
def window(trained_model_tag) -> tuple[pd.Timestamp, pd.Timestamp]:
    train_last = pd.Timestamp(load_model(trained_model_tag).metadata["train_range"][1])
    start = train_last + 2 * BAR_INTERVAL
    return start, start + (TRADED_BARS - 1) * BAR_INTERVAL


@pytest.fixture(scope="module")
def offline(candles, trained_model_tag, window):
    return backtest_stored_model(
        candles, model_tag=trained_model_tag, start=window[0], end=window[1]
    )


def _assert_trades_like_offline(served, offline, tag):
    assert served.model_tag == offline.model_tag == tag
    pd.testing.assert_series_equal(served.bars["position"], offline.bars["position"])
    pd.testing.assert_series_equal(served.bars["signal"], offline.bars["signal"])
    assert served.strategy.total_return == pytest.approx(offline.strategy.total_return, abs=1e-12)
    pd.testing.assert_series_equal(
        served.bars["probability_up"], offline.bars["probability_up"], atol=1e-5, rtol=0
    )
    parity = served.details["service_parity"]
    assert parity["signal_disagreements_vs_offline"] == 0
    assert parity["bars_rechecked_on_same_windows"] >= 64
    assert parity["max_abs_probability_diff_on_same_windows"] < 1e-6


def test_backtest_through_http_trades_like_the_offline_model(
    http_url, candles, trained_model_tag, window, offline
):
    with HttpClient(http_url) as service:
        served = backtest_stored_model(candles, service=service, start=window[0], end=window[1])
    _assert_trades_like_offline(served, offline, trained_model_tag)


def test_backtest_through_grpc_trades_like_the_offline_model(
    grpc_address, candles, trained_model_tag, window, offline
):
    with GrpcClient(grpc_address) as service:
        served = backtest_stored_model(candles, service=service, start=window[0], end=window[1])
    _assert_trades_like_offline(served, offline, trained_model_tag)


def test_service_route_refuses_another_model_and_in_sample_bars(
    http_url, candles, trained_model_tag, window, tmp_path, capsys
):
    with HttpClient(http_url) as service, pytest.raises(ModelContractError, match="serves"):
        backtest_stored_model(candles, service=service, model_tag="btcusdt_mlp:someotherversion")
    in_sample = (window[0] - 2 * BAR_INTERVAL).isoformat()
    assert main(["--service-url", http_url, "--start", in_sample, "--out", str(tmp_path)]) == 2
    assert "in-sample" in capsys.readouterr().err
    end = window[0] + 23 * BAR_INTERVAL
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
