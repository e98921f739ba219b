"""Monitoring after release, end to end: a real ``bentoml serve`` answers real BTCUSDT windows;
its prediction log (``bentoml.monitor``), live drift gauges and the two CLIs
(``python -m monitoring.drift``, ``python -m monitoring.outcomes``) are checked against offline
recomputation. "Unshifted": windows ending at candles spread over the model's training window
(what its reference profile describes). "Shifted": windows from a later period with a steady
+0.2 %/hour trend multiplied into their prices (a strong bull run the model never saw)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY
from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score

from artifact import REFERENCE_FILE, load_model
from client import HttpClient, candles_payload
from devtools import REPO_ROOT, free_port, isolated_home, running_server
from features import FEATURE_NAMES, OHLCV_COLUMNS, WARMUP_BARS, compute_window_features
from monitoring.drift_report import daily_drift
from monitoring.drift_stats import drift_table
from monitoring.outcomes import model_reference, policy_pnl, realised_outcomes, retrain_advice
from monitoring.prediction_log import read_predictions
from tests.integration.test_service import metric_value
from tests.servers import server_env

N_WINDOWS = 400
BATCH = 50  # = BTC_SERVE_DRIFT_EVERY below: every request refreshes the gauges
SHIFT_PER_HOUR = 0.002
SHIFTED_RANGE = ("2022-03-15", "2022-06-14")


# ---------------------------------------------------------------- real windows


def window_ends(frame: pd.DataFrame, start: str, stop: str, n: int) -> np.ndarray:
    """``n`` positions evenly spread over [start, stop] whose 241-candle window has no gap."""
    ts = frame["timestamp"]
    hourly = (ts.diff() == pd.Timedelta(hours=1)).astype(int)
    gap_free = (hourly.rolling(WARMUP_BARS).sum() == WARMUP_BARS).to_numpy()
    inside = ((ts >= pd.Timestamp(start)) & (ts <= pd.Timestamp(stop))).to_numpy()
    positions = np.flatnonzero(gap_free & inside)
    return positions[np.linspace(0, len(positions) - 1, n).round().astype(int)]


def windows_at(frame: pd.DataFrame, ends: np.ndarray, trend: float = 0.0) -> list[pd.DataFrame]:
    out = []
    for end in ends:
        window = frame.iloc[end - WARMUP_BARS : end + 1].reset_index(drop=True).copy()
        factor = np.exp(trend * np.arange(len(window)))
        for column in ("open", "high", "low", "close"):
            window[column] *= factor
        out.append(window)
    return out


def window_features(windows: list[pd.DataFrame]) -> np.ndarray:
    return compute_window_features(np.stack([w[list(OHLCV_COLUMNS)].to_numpy() for w in windows]))


@pytest.fixture(scope="module")
def train_range(trained_model_tag) -> tuple[str, str]:
    first, last = bentoml.models.get(trained_model_tag).info.metadata["train_range"]
    return first, last


@pytest.fixture(scope="module")
def profile(trained_model_tag) -> dict:
    path = Path(bentoml.models.get(trained_model_tag).path) / REFERENCE_FILE
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def unshifted(btc_frame, train_range) -> list[pd.DataFrame]:
    return windows_at(btc_frame, window_ends(btc_frame, *train_range, N_WINDOWS))


@pytest.fixture(scope="module")
def shifted(btc_frame) -> list[pd.DataFrame]:
    start, stop = (f"{d}T00:00:00+00:00" for d in SHIFTED_RANGE)
    ends = window_ends(btc_frame, start, stop, N_WINDOWS)
    return windows_at(btc_frame, ends, SHIFT_PER_HOUR)


def test_reference_profile_is_stored_with_the_model(trained_model_tag, profile, train_range):
    assert list(profile["features"]) == list(FEATURE_NAMES)
    stored = bentoml.models.get(trained_model_tag).info.metadata
    assert profile["n_rows"] == stored["train_rows"]  # every row the final model was fit on
    assert REFERENCE_FILE in stored["files_sha256"]  # verified on load like the weights


def test_live_drift_window_matches_offline_statistics(profile, unshifted, shifted):
    """``serving.monitor.LiveDrift`` in-process: the gauges equal ``drift_table`` of its window."""
    from serving.metrics import service_metrics
    from serving.monitor import LiveDrift

    service_metrics()  # registers the gauges in this process's default registry
    tag = {"model_tag": "unit:test"}
    drift = LiveDrift(profile, model_tag="unit:test", window_rows=300, every=100, min_rows=200)
    features = window_features(unshifted[:150] + shifted[:300])
    drift.observe(features[:150])  # below min_rows: nothing exported
    time.sleep(0.2)
    assert REGISTRY.get_sample_value("btcusdt_feature_drift_window_rows", tag) is None
    drift.observe(features[150:])
    expected = drift_table(profile, features[-300:], FEATURE_NAMES)  # the newest 300 rows
    deadline = time.monotonic() + 10
    while REGISTRY.get_sample_value("btcusdt_feature_drift_window_rows", tag) != 300:
        assert time.monotonic() < deadline, "the drift export never ran"
        time.sleep(0.05)
    for name in FEATURE_NAMES:
        labels = {"feature": name, **tag}
        psi = REGISTRY.get_sample_value("btcusdt_feature_drift_psi", labels)
        ks = REGISTRY.get_sample_value("btcusdt_feature_drift_ks", labels)
        assert psi == pytest.approx(expected[name]["psi"], rel=1e-9), name
        assert ks == pytest.approx(expected[name]["ks"], rel=1e-9), name


# ---------------------------------------------------------------- the served model


@pytest.fixture(scope="module")
def monitored(trained_model_tag, tmp_path_factory, unshifted, shifted):
    """A server with a small drift window, fed the unshifted windows, then the shifted ones.

    Yields ``(url, log_path, answers)``; the test functions look at what each phase left.
    """
    base = tmp_path_factory.mktemp("monitored-server")
    home = isolated_home(base / "home", os.environ["BENTOML_HOME"])
    env = server_env(home, trained_model_tag)
    env |= {
        "BTC_SERVE_DRIFT_WINDOW": str(N_WINDOWS),
        "BTC_SERVE_DRIFT_EVERY": str(BATCH),
        "BTC_SERVE_DRIFT_MIN_INTERVAL_S": "0",
        "BTC_SERVE_DRIFT_MIN_ROWS": "200",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "service:svc", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--api-workers", "1"]
    with HttpClient(url, timeout_s=120) as client:
        with running_server(args, env, base / "server.log", client.is_ready):
            yield {
                "url": url,
                "client": client,
                "logs": Path(home) / "prediction_logs",
                "server_log": base / "server.log",
            }


def latest_tag(answers: list[dict]) -> str:
    return answers[-1]["model_tag"]


def feed(client: HttpClient, windows: list[pd.DataFrame]) -> list[dict]:
    answers = []
    for start in range(0, len(windows), BATCH):
        answers += client.predict_batch(windows[start : start + BATCH])
    return answers


def gauges(url: str, tag: str) -> dict[str, dict[str, float]]:
    text = httpx.get(f"{url}/metrics").text
    return {
        name: {
            "psi": metric_value(text, "btcusdt_feature_drift_psi", feature=name, model_tag=tag),
            "ks": metric_value(text, "btcusdt_feature_drift_ks", feature=name, model_tag=tag),
        }
        for name in FEATURE_NAMES
    }


def wait_for_gauges(url: str, tag: str, expected: dict, timeout_s: float = 30.0) -> dict:
    """The drift gauges once they equal ``expected`` (the export runs in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = gauges(url, tag)
        if all(
            got[n]["psi"] == pytest.approx(expected[n]["psi"], rel=1e-6, abs=1e-9)
            and got[n]["ks"] == pytest.approx(expected[n]["ks"], rel=1e-6, abs=1e-9)
            for n in FEATURE_NAMES
        ):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"drift gauges {got} never reached {expected}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def unshifted_phase(monitored, unshifted, profile, trained_model_tag):
    answers = feed(monitored["client"], unshifted)
    expected = drift_table(profile, window_features(unshifted), FEATURE_NAMES)
    return answers, wait_for_gauges(monitored["url"], trained_model_tag, expected), expected


@pytest.fixture(scope="module")
def shifted_phase(monitored, unshifted_phase, shifted, profile, trained_model_tag):
    answers = feed(monitored["client"], shifted)
    expected = drift_table(profile, window_features(shifted), FEATURE_NAMES)
    return answers, wait_for_gauges(monitored["url"], trained_model_tag, expected), expected


@pytest.mark.integration
def test_live_gauges_show_no_drift_for_unshifted_windows(unshifted_phase):
    _, live, expected = unshifted_phase
    assert all(v["psi"] < 0.1 for v in live.values()), live
    assert all(row["level"] == "stable" for row in expected.values())
    assert max(v["ks"] for v in live.values()) < 0.1


@pytest.mark.integration
def test_live_gauges_show_drift_for_shifted_windows(shifted_phase, monitored, trained_model_tag):
    _, live, _ = shifted_phase
    significant = [name for name, v in live.items() if v["psi"] > 0.25]
    assert len(significant) >= 10, live
    assert {"ret_24", "rsi_14", "ema_dist_50"} <= set(significant)
    text = httpx.get(f"{monitored['url']}/metrics").text
    rows = metric_value(text, "btcusdt_feature_drift_window_rows", model_tag=trained_model_tag)
    assert rows == N_WINDOWS


@pytest.mark.integration
def test_prediction_log_holds_every_answer_with_its_features(
    monitored, unshifted_phase, unshifted, trained_model_tag
):
    answers, _, _ = unshifted_phase
    logged = read_predictions(monitored["logs"], model_tag=trained_model_tag)
    stamps = logged["candle_timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    by_candle = logged.set_index(stamps)
    assert {a["timestamp"] for a in answers} <= set(by_candle.index)
    rows = by_candle.loc[[a["timestamp"] for a in answers]]
    np.testing.assert_allclose(
        rows[list(FEATURE_NAMES)].to_numpy(), window_features(unshifted), rtol=1e-12, atol=0
    )
    assert rows["probability_up"].tolist() == [a["probability_up"] for a in answers]
    assert rows["signal"].tolist() == [a["signal"] for a in answers]
    assert set(rows["model_tag"]) == {trained_model_tag}
    assert set(rows["horizon_bars"]) == {answers[0]["horizon_bars"]}
    # BentoML's default monitor: JSON lines per API worker, and the column schema beside them
    data_files = sorted((monitored["logs"] / "btcusdt_predictions" / "data").iterdir())
    assert [f.name for f in data_files] == ["data.1.log"]
    schema = json.loads(
        (monitored["logs"] / "btcusdt_predictions" / "schema" / "schema.1.log").read_text()
    )
    roles = {c["name"]: c["role"] for c in schema["columns"]}
    assert all(roles[name] == "feature" for name in FEATURE_NAMES)
    assert roles["probability_up"] == roles["signal"] == "prediction"


@pytest.mark.integration
def test_prediction_log_names_each_answer_by_its_request_id(monitored, unshifted_phase, unshifted):
    """The log's request_id is the one the client sent (X-Request-ID), as in the answer's
    header, the JSON logs and ClickHouse; requests sent without one get a generated id."""
    window = unshifted[3]
    monitored["client"].call("predict", {"candles": candles_payload(window)}, request_id="log-7")
    data = monitored["logs"] / "btcusdt_predictions" / "data" / "data.1.log"
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
        ours = [r for r in records if r["request_id"] == "log-7"]
        if ours or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    last = pd.Timestamp(window["timestamp"].iloc[-1]).tz_convert("UTC")
    assert [pd.Timestamp(r["candle_timestamp"]) for r in ours] == [last]
    fed = [r for r in records if r["request_id"] != "log-7"]
    ids = {r["request_id"] for r in fed}
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids), sorted(ids)[:3]
    assert len(ids) == len(fed) // BATCH  # one id per batch request of BATCH windows


@pytest.mark.integration
def test_prediction_log_reader_skips_a_line_cut_short(monitored, unshifted_phase, tmp_path):
    source = monitored["logs"] / "btcusdt_predictions" / "data" / "data.1.log"
    copy = tmp_path / "btcusdt_predictions" / "data" / "data.1.log"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(source.read_bytes() + b'{"ret_1": 0.01, "ret_3"')  # a crash mid-write
    assert read_predictions(tmp_path).equals(read_predictions(source))


# ---------------------------------------------------------------- the CLIs on the log


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.integration
def test_drift_cli_reports_no_drift_for_unshifted_and_drift_for_shifted(
    monitored, shifted_phase, unshifted_phase, train_range, tmp_path
):
    logs = str(monitored["logs"])
    calm = run_cli(
        "monitoring.drift",
        *("--logs", logs, "--until", train_range[1], "--out", str(tmp_path / "calm")),
        *("--fail-on", "moderate"),
    )
    assert calm.returncode == 0, calm.stderr
    overall = pd.read_csv(tmp_path / "calm" / "drift_overall.csv").set_index("feature")
    _, _, expected = unshifted_phase
    assert set(overall["level"]) == {"stable"}
    for name in FEATURE_NAMES:
        assert overall.loc[name, "psi"] == pytest.approx(expected[name]["psi"], rel=1e-6)
    assert (overall["rows"] == N_WINDOWS).all()

    stormy = run_cli(
        "monitoring.drift",
        *("--logs", logs, "--since", SHIFTED_RANGE[0], "--out", str(tmp_path / "stormy")),
        *("--window-days", "30", "--fail-on", "significant"),
    )
    assert stormy.returncode == 1, stormy.stderr  # significant drift found
    assert "significant" in stormy.stdout and "ema_dist_50" in stormy.stdout
    overall = pd.read_csv(tmp_path / "stormy" / "drift_overall.csv")
    assert (overall["level"] == "significant").sum() >= 10
    daily = pd.read_csv(tmp_path / "stormy" / "drift_by_day.csv")
    days = pd.to_datetime(daily["day"])
    assert days.min() >= pd.Timestamp(SHIFTED_RANGE[0]) and days.nunique() >= 80
    scored = daily[daily["level"] != "too few rows"]
    assert scored["day"].nunique() >= 50  # a 30-day window holds >= 100 rows after ~4 weeks
    per_day = scored.groupby("day")["level"].apply(lambda s: (s == "significant").sum())
    assert (per_day >= 10).all()
    png = tmp_path / "stormy" / "drift_by_day.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_daily_drift_counts_each_day_over_its_trailing_window(profile, btc_frame, train_range):
    """Day D covers the candles of days D-6..D; a day with too few rows gets no figure."""
    start = pd.Timestamp(train_range[0])
    ends = window_ends(btc_frame, str(start), str(start + pd.Timedelta(days=20)), 200)
    frame = pd.DataFrame(window_features(windows_at(btc_frame, ends)), columns=FEATURE_NAMES)
    frame["candle_timestamp"] = btc_frame["timestamp"].iloc[ends].to_numpy()
    daily = daily_drift(frame, profile, window_days=7, min_rows=20)
    day = start.floor("D") + pd.Timedelta(days=12)
    stamps = frame["candle_timestamp"]
    inside = frame[(stamps >= day - pd.Timedelta(days=6)) & (stamps < day + pd.Timedelta(days=1))]
    row = daily[(daily["day"] == day.date()) & (daily["feature"] == "rsi_14")].iloc[0]
    assert row["rows"] == len(inside) >= 20
    expected = drift_table(profile, inside[list(FEATURE_NAMES)].to_numpy(), FEATURE_NAMES)
    assert row["psi"] == pytest.approx(expected["rsi_14"]["psi"])
    assert row["ks"] == pytest.approx(expected["rsi_14"]["ks"])
    first_day = daily[daily["day"] == daily["day"].min()]
    assert first_day["rows"].iloc[0] < 20 and set(first_day["level"]) == {"too few rows"}
    assert first_day["psi"].isna().all()


@pytest.mark.integration
def test_outcomes_cli_scores_logged_predictions_against_real_candles(
    monitored, unshifted_phase, btc_frame, train_range, tmp_path
):
    answers, _, _ = unshifted_phase
    last = max(pd.Timestamp(a["timestamp"]) for a in answers)
    # Candles up to the newest predicted candle: its outcome (the next close) is not known yet.
    candles = btc_frame[
        (btc_frame["timestamp"] >= pd.Timestamp(train_range[0]) - pd.Timedelta(days=20))
        & (btc_frame["timestamp"] <= last)
    ].copy()
    candles["timestamp"] = candles["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    data = tmp_path / "candles.csv"
    candles.to_csv(data, index=False)
    done = run_cli(
        "monitoring.outcomes",
        *("--logs", str(monitored["logs"]), "--data", str(data), "--until", train_range[1]),
        *("--window", "200", "--out", str(tmp_path / "outcomes")),
    )
    assert done.returncode == 0, done.stderr
    assert f"{N_WINDOWS} predictions; {N_WINDOWS - 1} resolved, 1 pending" in done.stdout

    # Oracle, independent of features.make_labels: the next hour's close against this close.
    close = btc_frame.set_index("timestamp")["close"]
    scored = pd.read_csv(tmp_path / "outcomes" / "outcomes.csv", parse_dates=["candle_timestamp"])
    resolved = scored[scored["status"] == "resolved"].reset_index(drop=True)
    t = pd.DatetimeIndex(resolved["candle_timestamp"])
    truth = close.reindex(t + pd.Timedelta(hours=1)).to_numpy() > close.reindex(t).to_numpy()
    np.testing.assert_array_equal(resolved["outcome"].to_numpy(), truth.astype(float))
    by_stamp = {pd.Timestamp(a["timestamp"]): a for a in answers}
    p = np.array([by_stamp[ts]["probability_up"] for ts in t])
    # Accuracy is of the direction call P(up) >= threshold, as on the holdout (the logged
    # signal is the decision policy's target position, scored as P&L instead).
    threshold = bentoml.models.get(latest_tag(answers)).info.metadata["threshold"]
    calls = p >= threshold

    rolling = pd.read_csv(tmp_path / "outcomes" / "rolling.csv")
    latest = rolling.iloc[-1]
    assert latest["rows"] == 200
    assert latest["accuracy"] == pytest.approx(accuracy_score(truth[-200:], calls[-200:]))
    assert latest["roc_auc"] == pytest.approx(roc_auc_score(truth[-200:], p[-200:]))
    assert latest["brier"] == pytest.approx(brier_score_loss(truth[-200:], p[-200:]))
    assert f"{roc_auc_score(truth, p):.4f}" in done.stdout  # all resolved, overall
    metrics = bentoml.models.get(latest_tag(answers)).info.metadata["metrics"]
    constant_brier = metrics["holdout"]["majority"]["brier"]
    retrain = latest["roc_auc"] < 0.5 or latest["brier"] > constant_brier
    assert ("RETRAIN" in done.stdout) == retrain
    assert (tmp_path / "outcomes" / "rolling.png").read_bytes()[:4] == b"\x89PNG"
    pnl = pd.read_csv(tmp_path / "outcomes" / "policy_pnl.csv")
    # Every bar from the one after the first resolved prediction to the one after the last;
    # bars without a logged P(up) stay flat, as in the backtest.
    assert pnl["probability_up"].notna().sum() == len(resolved) - 1
    assert "following the decision policy" in done.stdout


def test_outcomes_wait_for_the_label_horizon_and_skip_unknown_candles(btc_slice):
    candles = btc_slice.iloc[:100]
    stamps = [candles["timestamp"].iloc[i] for i in (10, 97, 98, 99)]
    stamps.append(candles["timestamp"].iloc[-1] + pd.Timedelta(hours=5))
    predictions = pd.DataFrame(
        {"candle_timestamp": stamps, "horizon_bars": 3, "probability_up": 0.5, "signal": "long"}
    )
    joined = realised_outcomes(predictions, candles)
    assert joined["status"].tolist() == ["resolved", "pending", "pending", "pending", "no candles"]
    close = candles["close"].to_numpy()
    assert joined["outcome"].iloc[0] == float(close[13] > close[10])


def test_retrain_advice_names_each_reason():
    fine = retrain_advice({"roc_auc": 0.56, "brier": 0.247}, min_auc=0.5, max_brier=0.25)
    assert not fine.retrain and fine.reasons == []
    worse = retrain_advice({"roc_auc": 0.47, "brier": 0.26}, min_auc=0.5, max_brier=0.25)
    assert worse.retrain
    assert [r.split()[0] for r in worse.reasons] == ["ROC-AUC", "Brier"]


# ---------------------------------------------------------------- models without a reference


@pytest.fixture(scope="module")
def model_without_reference(trained_model) -> str:
    """The session model saved again without ``reference.json``, as models were before drift
    monitoring existed."""
    from artifact import save_model

    stored = dict(bentoml.models.get(trained_model.tag).info.metadata)
    stored.pop("files_sha256")
    tag = save_model(trained_model.model, metadata=stored)
    yield tag
    bentoml.models.delete(tag)


@pytest.mark.integration
def test_a_model_without_reference_is_served_without_drift_gauges(
    model_without_reference, tmp_path, btc_slice
):
    home = isolated_home(tmp_path / "home", os.environ["BENTOML_HOME"])
    env = server_env(home, model_without_reference)
    env |= {
        "BTC_SERVE_DRIFT_EVERY": "1",
        "BTC_SERVE_DRIFT_MIN_ROWS": "10",
        "BTC_SERVE_DRIFT_MIN_INTERVAL_S": "0",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "service:svc", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--api-workers", "1"]
    windows = [btc_slice.iloc[i * 10 : i * 10 + 300] for i in range(20)]
    with HttpClient(url) as client, running_server(args, env, tmp_path / "log", client.is_ready):
        answers = client.predict_batch(windows)
        assert {a["model_tag"] for a in answers} == {model_without_reference}
        time.sleep(1.0)
        assert "btcusdt_feature_drift_psi{" not in httpx.get(f"{url}/metrics").text
    warnings = [
        json.loads(line)
        for line in (tmp_path / "log").read_text().splitlines()
        if '"drift_gauges_off"' in line
    ]
    assert warnings and warnings[0]["level"] == "WARNING"
    assert REFERENCE_FILE in warnings[0]["reason"]
    logged = read_predictions(Path(home) / "prediction_logs")
    assert len(logged) == len(windows)  # the prediction log does not need the reference


def test_live_drift_recomputes_at_most_once_per_interval(profile, unshifted):
    """Under load the gauges are refreshed by time, not per ``every`` predictions alone."""
    from serving.monitor import LiveDrift

    class Counted(LiveDrift):
        exports = 0

        def export(self, rows):  # type: ignore[no-untyped-def]
            Counted.exports += 1

    features = window_features(unshifted[:200])
    drift = Counted(
        profile, model_tag="unit:interval", window_rows=100, every=10, min_rows=10,
        min_interval_s=3600,
    )  # fmt: skip
    for start in range(0, 200, 10):
        drift.observe(features[start : start + 10])
    time.sleep(0.3)
    assert Counted.exports == 1  # 20 times due by count, once by time
    drift.min_interval_s = 0
    drift.observe(features[:10])
    deadline = time.monotonic() + 10
    while Counted.exports < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_outcomes_score_following_the_models_decision_policy(trained_model_tag, btc_slice):
    reference = model_reference(trained_model_tag)
    policy = reference["policy"]
    assert policy == load_model(trained_model_tag).policy
    rng = np.random.default_rng(2)
    stamps = btc_slice["timestamp"].iloc[100:600]
    p = np.clip(rng.normal(0.55, 0.08, len(stamps)), 0.01, 0.99)
    resolved = pd.DataFrame({"candle_timestamp": stamps, "probability_up": p, "signal": "flat"})
    result = policy_pnl(resolved, btc_slice, reference)
    assert result is not None and result.policy == policy
    assert result.fee_bps == reference["fee_bps"] and result.slippage_bps == 2.0
    # The bar after each logged prediction, positions from the one policy implementation.
    assert result.bars["timestamp"].iloc[0] == btc_slice["timestamp"].iloc[101]
    assert len(result.bars) == len(stamps)
    np.testing.assert_array_equal(result.bars["position"], policy.positions(p))
    assert set(result.comparison) >= {"policy", "plain_threshold", "buy_and_hold", "cash"}
