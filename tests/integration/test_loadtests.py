"""Load tests as users run them: ``python -m loadtests.run`` drives real locust against real
servers (one it starts itself over HTTP, one given by address over gRPC) with real candle
windows; plus the pieces that decide what is sent, what counts as a failure and where a run may
point."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from devtools import REPO_ROOT, free_port
from features import BAR_INTERVAL, WARMUP_BARS
from loadtests.run import parse_args, require_loopback
from loadtests.workload import (
    AnswerError,
    build_workload,
    grpc_failure,
    http_failure,
    is_server_error,
    sample_windows,
)

RUN_LIMIT_S = 240


def run_loadtest(*args: str, out: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """``python -m loadtests.run <args> --out <out>``; its process and ``summary.json``."""
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.run", *args, "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
    )
    summary_path = out / "summary.json"
    assert summary_path.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(summary_path.read_text())


def aggregated_row(out: Path) -> dict[str, str]:
    with (out / "locust_stats.csv").open(newline="") as stats:
        return next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")


# ---------------------------------------------------------------- real runs


@pytest.mark.integration
def test_mixed_http_run_against_a_server_it_starts_passes_and_writes_csv_and_summary(
    trained_model_tag, tmp_path
):
    done, summary = run_loadtest(
        "--workload", "mixed", "--users", "4", "--spawn-rate", "4", "--run-time-s", "10",
        "--max-requests", "300", "--model-tag", trained_model_tag,
        "--bentoml-home", os.environ["BENTOML_HOME"],
        out=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASS" in done.stdout
    assert summary["failures"] == 0 and summary["server_errors"] == 0
    assert 10 <= summary["requests"] <= 300  # never more than --max-requests go out
    assert summary["requests_per_s"] > 0 and 0 < summary["p50_ms"] <= summary["p99_ms"]
    assert {"POST predict", "POST indicators"} <= set(summary["per_name"])
    for name in ("stats", "failures", "exceptions", "stats_history"):
        assert (tmp_path / f"locust_{name}.csv").stat().st_size > 0
    assert int(aggregated_row(tmp_path)["Request Count"]) == summary["requests"]
    assert (tmp_path / "summary.txt").read_text().startswith("mixed -> http://127.0.0.1:")
    assert summary["server_peak_rss_mib"]["api_server"] > 50
    assert summary["mean_batch_size"]["features.last_row"] >= 1  # indicators
    assert summary["mean_batch_size"]["direction.predict_windows"] >= 1  # predict


@pytest.mark.integration
def test_grpc_run_against_a_given_address_passes_and_stops_at_max_requests(grpc_address, tmp_path):
    done, summary = run_loadtest(
        "--workload", "grpc", "--grpc-address", grpc_address, "--users", "4",
        "--spawn-rate", "4", "--run-time-s", "60", "--max-requests", "40",
        out=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert summary["failures"] == 0 and summary["server_errors"] == 0
    assert summary["requests"] == 40  # exactly the budget: sent, completed, then it stopped
    assert summary["duration_s"] < 60  # the request limit ended it, not the run time
    assert all(name.startswith("grpc ") for name in summary["per_name"])
    assert int(aggregated_row(tmp_path)["Request Count"]) == summary["requests"]
    assert summary["server_peak_rss_mib"] is None  # not started by this run: not watched


@pytest.mark.slow
def test_run_whose_requests_fail_exits_non_zero_and_names_the_failure(tmp_path):
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    done, summary = run_loadtest(
        "--workload", "predict", "--url", nothing_listens, "--users", "2", "--spawn-rate", "2",
        "--run-time-s", "3", "--max-requests", "20",
        out=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert "FAIL" in done.stdout
    assert summary["failures"] == summary["requests"] > 0
    assert summary["requests"] <= 20
    assert any("connection error" in message for message in summary["failure_messages"])


@pytest.mark.parametrize(
    ("module", "served"), [("service", False), ("benchmarks.noop_service", True)]
)
def test_benchmark_baseline_api_exists_only_in_the_benchmark_service(
    trained_model_tag, module, served
):
    env = {**os.environ, "BTC_SERVE_MODEL_TAG": trained_model_tag}
    probe = f"import json, {module} as m; print(json.dumps(sorted(m.svc.apis)))"
    listed = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    apis = json.loads(listed.stdout.strip().splitlines()[-1])
    assert {"predict", "indicators", "model_info"} <= set(apis)
    assert ("predict_noop" in apis) is served


# ---------------------------------------------------------------- what is sent and checked


def test_sampled_windows_are_real_gap_free_candles_of_the_asked_length(btc_frame):
    windows = sample_windows(20, 300, seed=3, candles=btc_frame)
    assert len(windows) == 20
    for window in windows:
        assert len(window) == 300
        assert (window["timestamp"].diff().iloc[1:] == BAR_INTERVAL).all()
        original = btc_frame.set_index("timestamp").loc[window["timestamp"]]
        pd.testing.assert_frame_equal(
            original.reset_index(), window.reset_index(drop=True), check_like=True
        )
    again = sample_windows(20, 300, seed=3, candles=btc_frame)
    assert [w.index[0] for w in again] == [w.index[0] for w in windows]


def test_sampling_refuses_a_window_longer_than_any_gap_free_stretch(btc_slice):
    with pytest.raises(ValueError, match="no gap-free stretch of 3001 candles"):
        sample_windows(1, len(btc_slice) + 1, candles=btc_slice)


def test_workload_checks_reject_answers_that_do_not_fit_the_request():
    workload = build_workload(window_bars=WARMUP_BARS + 10, n_windows=8)
    call = workload.calls["predict"][0]
    candles = json.loads(call.body)["candles"]
    last = candles[-1]["timestamp"]
    good = {"probability_up": 0.42, "signal": "flat", "model_tag": "m:v", "timestamp": last}
    call.check(good)
    for bad in ({**good, "timestamp": candles[-2]["timestamp"]}, {**good, "probability_up": 1.5}):
        with pytest.raises(AnswerError):
            call.check(bad)
    batch = workload.calls["predict_batch"][0]
    with pytest.raises(AnswerError, match="expected 8 predictions"):
        batch.check({"predictions": [good]})
    indicators = workload.calls["indicators_all_rows"][0]
    with pytest.raises(AnswerError):
        indicators.check({"timestamp": json.loads(indicators.body)["candles"][-1]["timestamp"]})


def test_only_http_5xx_and_server_side_grpc_codes_count_as_server_errors():
    def as_recorded(message: str) -> str:
        """As locust's failures CSV keeps it: the repr of the exception (importing locust here
        would monkey-patch the whole test session with gevent)."""
        return repr(RuntimeError(message))

    assert is_server_error(as_recorded(http_failure(503, '{"error": "busy"}')))
    assert is_server_error(as_recorded(grpc_failure("UNAVAILABLE", "runner down")))
    assert not is_server_error(as_recorded(http_failure(400, '{"error": "candles row 3"}')))
    assert not is_server_error(as_recorded(grpc_failure("INVALID_ARGUMENT", "HTTP 500:")))
    assert not is_server_error(as_recorded("connection error: refused"))


# ---------------------------------------------------------------- bounds of a run


@pytest.mark.parametrize("host", ["10.0.0.7", "192.168.1.2", "example.com", "0.0.0.0", None])
def test_targets_off_this_machine_are_refused(host):
    with pytest.raises(SystemExit, match="not a loopback address"):
        require_loopback(host, "--url")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_targets_are_accepted(host):
    require_loopback(host, "--url")


@pytest.mark.parametrize(
    "argv",
    [
        ["--users", "0"],
        ["--users", "513"],
        ["--run-time-s", "3601"],
        ["--max-requests", "0"],
        ["--window-bars", str(WARMUP_BARS)],
        ["--users", "2", "--spawn-rate", "4"],
        ["--url", "http://10.1.2.3:3000"],
        ["--workload", "grpc", "--url", "http://127.0.0.1:3000"],
    ],
)
def test_unbounded_or_inconsistent_runs_are_refused(argv):
    with pytest.raises(SystemExit):
        parse_args(argv)
