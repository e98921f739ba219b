"""``btcusdt data update`` against a fake Binance on loopback (tests/fake_binance.py): exactly the
closed candles served, in order, with exact values; incremental, idempotent and atomic; faults
(429/418 with Retry-After, 5xx, timeouts, truncated pages, overlapping pages, gaps, a forming
candle, a kill between fetch and write) lose or duplicate nothing; bad data is refused with
the row and the rule."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cli import app
from ingest import provenance_path
from ingest._dataset import parquet_table
from tests.fake_binance import HOUR_MS, FakeBinance, Fault, recorded_klines
from training.data import load_candles

REPO_ROOT = Path(__file__).resolve().parents[2]
SINCE = "2021-08-01T00:00:00Z"


@pytest.fixture(scope="module")
def recorded(btc_frame: pd.DataFrame) -> pd.DataFrame:
    """2021-08 .. 2021-10 of the bundled candles (2,202 rows: three pages, two real gaps)."""
    stamps = btc_frame["timestamp"]
    chosen = (stamps >= pd.Timestamp(SINCE)) & (stamps < pd.Timestamp("2021-11-01", tz="UTC"))
    return btc_frame[chosen].reset_index(drop=True)


@pytest.fixture(scope="module")
def klines(recorded: pd.DataFrame) -> list[list]:
    return recorded_klines(recorded)


def run_update(out: Path, base_url: str, *extra: str) -> tuple[int, str, str]:
    """``btcusdt data update ...`` (the real command line group), in-process."""
    runner = CliRunner()
    args = ["data", "update", "--since", SINCE, "--out", str(out), "--base-url", base_url]
    result = runner.invoke(app, [*args, *extra, "--no-progress"], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def stored(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out)


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out, provenance_path(out)) if p.exists()}


def test_update_stores_exactly_the_closed_candles_served_in_contract_order(
    tmp_path, klines, recorded
):
    out = tmp_path / "live" / "BTCUSDT-1h.parquet"
    with FakeBinance(klines).running() as fake:
        code, stdout, stderr = run_update(out, fake.url)
    assert code == 0, stderr
    frame = stored(out)
    assert list(frame.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    pd.testing.assert_frame_equal(frame, recorded, check_dtype=False)
    assert (
        frame[["open", "high", "low", "close", "volume"]].to_numpy()
        == recorded.iloc[:, 1:].to_numpy()
    ).all()
    assert fake.served_klines == len(klines)
    assert "rows added: 2202 (2021-08-01T00:00:00Z .. 2021-10-31T23:00:00Z)" in stdout
    assert "gaps in the new candles: 2 (6 missing bars" in stdout
    assert "2021-08-13T01:00:00Z -> 2021-08-13T06:00:00Z (4 missing)" in stdout
    assert f"file: {out}" in stdout
    provenance = json.loads(provenance_path(out).read_text())
    assert provenance["rows"] == 2202
    assert provenance["symbol"] == "BTCUSDT" and provenance["interval"] == "1h"
    assert provenance["source"] == f"binance-rest {fake.url}/api/v3/klines"
    assert (provenance["first_candle"], provenance["last_candle"]) == (
        "2021-08-01T00:00:00Z",
        "2021-10-31T23:00:00Z",
    )
    assert provenance["missing_bars"] == 6 and len(provenance["gaps"]) == 2
    import hashlib

    assert provenance["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    # every page asked for at most 1000 candles, and only the two endpoints were used
    assert {r.path for r in fake.requests} == {"/api/v3/time", "/api/v3/klines"}
    assert all(int(r.params["limit"]) <= 1000 for r in fake.klines_requests())


def test_the_dataset_is_read_with_data_by_training_backtest_and_outcomes(
    tmp_path, klines, recorded
):
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines).running() as fake:
        assert run_update(out, fake.url)[0] == 0
    candles = load_candles(out)  # what --data of train, backtest and outcomes calls
    pd.testing.assert_frame_equal(candles.frame, recorded)
    assert candles.interval_text == "1h"
    assert [g.missing_bars for g in candles.report.gaps] == [4, 2]
    prepared = subprocess.run(
        [sys.executable, "-m", "training.prepare", "--data", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "2202 rows read, 2202 kept" in prepared.stdout


def test_second_run_with_nothing_new_changes_nothing_byte_for_byte(tmp_path, klines):
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines).running() as fake:
        assert run_update(out, fake.url)[0] == 0
        before = snapshot(out)
        mtimes = [p.stat().st_mtime_ns for p in (out, provenance_path(out))]
        code, stdout, _ = run_update(out, fake.url)
    assert code == 0
    assert "rows added: 0" in stdout and "(unchanged)" in stdout
    assert snapshot(out) == before
    assert [p.stat().st_mtime_ns for p in (out, provenance_path(out))] == mtimes


def test_later_run_fetches_only_the_candles_after_the_last_stored_one(tmp_path, klines, recorded):
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines[:2000]).running() as fake:
        assert run_update(out, fake.url)[0] == 0
        fake.klines = klines
        fake.now_ms = klines[-1][0] + HOUR_MS
        fake.requests.clear()
        code, stdout, _ = run_update(out, fake.url)
        first_start = int(fake.klines_requests()[0].params["startTime"])
    assert code == 0
    assert first_start == klines[2000][0]  # the hour after the last stored candle
    assert "rows added: 202" in stdout
    pd.testing.assert_frame_equal(stored(out), recorded, check_dtype=False)
    updates = json.loads(provenance_path(out).read_text())["updates"]
    assert [u["rows_added"] for u in updates] == [2000, 202]


def test_forming_last_candle_is_not_stored_then_stored_with_its_closed_values(
    tmp_path, klines, recorded
):
    out = tmp_path / "BTCUSDT-1h.parquet"
    last = klines[-1]
    with FakeBinance(klines, now_ms=last[0] + 20 * 60 * 1000).running() as fake:  # 20 min in
        code, stdout, _ = run_update(out, fake.url)
        assert code == 0
        assert "not stored: 1 candle(s) still forming (opened 2021-10-31T23:00:00Z)" in stdout
        assert stored(out)["timestamp"].iloc[-1] == recorded["timestamp"].iloc[-2]
        fake.now_ms = last[6] + 1  # the exchange's clock passes the close
        code, stdout, _ = run_update(out, fake.url)
    assert code == 0 and "rows added: 1" in stdout
    pd.testing.assert_frame_equal(stored(out), recorded, check_dtype=False)


def test_forming_is_judged_by_the_exchange_clock_not_the_local_one(tmp_path, klines):
    out = tmp_path / "BTCUSDT-1h.parquet"
    # The local clock is years past 2021; only the exchange's clock says the hour is open.
    with FakeBinance(klines, now_ms=klines[-1][0] + 1).running() as fake:
        assert run_update(out, fake.url)[0] == 0
    assert len(stored(out)) == len(klines) - 1


def test_rate_limit_and_ban_answers_are_retried_after_retry_after(tmp_path, klines, recorded):
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines).running() as fake:
        fake.faults = [
            Fault(status=429, headers={"Retry-After": "1"}),
            Fault(status=418, headers={"Retry-After": "2"}),
        ]
        code, stdout, stderr = run_update(out, fake.url)
        times = [r.at for r in fake.klines_requests()]
        statuses = [r.status for r in fake.klines_requests()]
    assert code == 0, stderr
    assert statuses[:3] == [429, 418, 200]
    assert times[1] - times[0] >= 1.0 and times[2] - times[1] >= 2.0
    assert "waited 3.0 s in retries" in stdout
    pd.testing.assert_frame_equal(stored(out), recorded, check_dtype=False)


def test_server_errors_timeouts_and_truncated_pages_are_retried_nothing_lost_or_doubled(
    tmp_path, klines, recorded
):
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines).running() as fake:
        fake.faults = [
            Fault(status=500, path="/api/v3/time"),
            Fault(status=503, on_request=1),  # page 1, first try
            Fault(truncate=True, on_request=3),  # page 2, first try
            Fault(delay_s=3.0, on_request=5),  # page 3: longer than --timeout
            Fault(status=502, on_request=6),  # page 3 again
        ]
        code, _, stderr = run_update(out, fake.url, "--timeout", "1")
        statuses = [r.status for r in fake.requests]
    assert code == 0, stderr
    assert statuses.count(200) >= 4 and 503 in statuses and 502 in statuses
    frame = stored(out)
    assert frame["timestamp"].is_unique
    pd.testing.assert_frame_equal(frame, recorded, check_dtype=False)


def test_retry_wait_is_bounded_and_a_failed_run_keeps_the_previous_dataset(tmp_path, klines):
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines[:1500]).running() as fake:
        assert run_update(out, fake.url)[0] == 0
        before = snapshot(out)
        fake.klines = klines
        fake.now_ms = klines[-1][0] + HOUR_MS
        fake.faults = [Fault(status=429, headers={"Retry-After": "3600"})]
        started = time.monotonic()
        code, _, stderr = run_update(out, fake.url, "--max-wait", "5")
    assert code == 1
    assert time.monotonic() - started < 30
    assert stderr.count("\n") == 1 and "429 rate limited" in stderr
    assert "retry budget of 5 s" in stderr
    assert snapshot(out) == before


def test_overlapping_pages_are_merged_each_candle_once(tmp_path, klines, recorded):
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines, overlap_rows=25).running() as fake:
        code, stdout, _ = run_update(out, fake.url)
    assert code == 0
    assert "met twice with identical values, kept once: 50" in stdout  # 25 on pages 2 and 3
    pd.testing.assert_frame_equal(stored(out), recorded, check_dtype=False)


def test_conflicting_values_across_pages_are_refused_naming_both_rows(tmp_path, klines):
    out = tmp_path / "BTCUSDT-1h.parquet"
    revised = list(klines[990])
    revised[4] = f"{float(revised[4]) + 1:.8f}"
    with FakeBinance(klines, overlap_rows=25).running() as fake:
        fake.replace, fake.replace_from_page = {revised[0]: revised}, 2
        code, _, stderr = run_update(out, fake.url)
    assert code == 2
    assert "conflicting values for candle 2021-09-11T10:00:00+00:00" in stderr
    assert "klines page 1 (startTime=1627776000000) row 990" in stderr
    assert "klines page 2" in stderr and "row 15" in stderr
    assert not out.exists()


def test_a_stored_candle_served_again_with_other_values_is_refused(tmp_path, klines):
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines[:1200]).running() as fake:
        assert run_update(out, fake.url)[0] == 0
        before = snapshot(out)
        revised = list(klines[1195])
        revised[5] = "0.00000000"
        fake.klines, fake.overlap_rows = klines, 10
        fake.now_ms = klines[-1][0] + HOUR_MS
        fake.replace = {revised[0]: revised}
        code, _, stderr = run_update(out, fake.url)
    assert code == 2
    assert "the stored dataset has" in stderr and "row 5" in stderr
    assert snapshot(out) == before


def test_a_bad_candle_is_refused_naming_the_page_row_and_the_rule(tmp_path, klines):
    out = tmp_path / "BTCUSDT-1h.parquet"
    broken = list(klines[1017])
    broken[3] = f"{float(broken[2]) + 10:.8f}"  # low above high
    with FakeBinance(klines).running() as fake:
        fake.replace = {broken[0]: broken}
        code, stdout, stderr = run_update(out, fake.url)
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: klines page 2 (startTime=")
    assert "row 17: high" in stderr and "must be >= low" in stderr
    assert stderr.count("\n") == 1
    assert not out.exists() and not provenance_path(out).exists()


def test_unknown_symbol_and_naive_since_are_refused_with_exit_2(tmp_path, klines):
    out = tmp_path / "ETHBTC.parquet"
    with FakeBinance(klines).running() as fake:
        code, _, stderr = run_update(out, fake.url, "--symbol", "NOPE1")
        assert code == 2 and "-1121: Invalid symbol." in stderr
        code, _, stderr = run_update(out, fake.url, "--since", "2021-08-01T00:00")
    assert code == 2 and "has no UTC offset" in stderr
    assert not out.exists()


def test_a_dataset_of_another_interval_is_not_extended(tmp_path, klines):
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines[:100]).running() as fake:
        assert run_update(out, fake.url)[0] == 0
        code, _, stderr = run_update(out, fake.url, "--interval", "4h")
    assert code == 2 and "holds BTCUSDT 1h candles, not BTCUSDT 4h" in stderr


def test_parquet_writing_is_deterministic(tmp_path, recorded):
    import pyarrow.parquet as pq

    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(parquet_table(recorded), first, compression="zstd")
    pq.write_table(parquet_table(recorded.copy()), second, compression="zstd")
    assert first.read_bytes() == second.read_bytes()


def _dataset_state(out: Path) -> tuple[int, bool]:
    """(rows, provenance describes the file); raises if the Parquet is not whole."""
    import hashlib

    frame = pd.read_parquet(out)
    provenance = json.loads(provenance_path(out).read_text())
    return len(frame), provenance["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def _start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_when(process: subprocess.Popen, ready, delay_s: float = 0.0) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        assert time.monotonic() < deadline and process.poll() is None, process.stderr
        time.sleep(0.002)
    time.sleep(delay_s)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_a_kill_between_fetch_and_write_leaves_the_previous_dataset_whole(
    tmp_path, klines, recorded
):
    """Real ``python -m ingest.cli`` processes, SIGKILLed mid-fetch and at several moments
    after the last page arrived (transform and write): each time the dataset on disk is either
    the previous one, byte for byte, or the complete new one; never a part."""
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance(klines[:600]).running() as fake:
        assert run_update(out, fake.url)[0] == 0
        before = snapshot(out)
        fake.klines = klines
        fake.now_ms = klines[-1][0] + HOUR_MS
        command = [sys.executable, "-m", "ingest.cli", "data", "update", "--since", SINCE]
        command += ["--out", str(out), "--no-progress", "--base-url", fake.url]

        fake.pages_sent, fake.requests = 0, []
        fake.faults = [Fault(delay_s=10.0, on_request=2)]  # page 2 of 2 hangs
        _kill_when(_start(command), lambda: fake.pages_sent >= 1, delay_s=0.2)
        assert snapshot(out) == before  # killed with page 1 in memory: nothing written
        fake.faults.clear()

        outcomes = []
        for delay_s in (0.0, 0.03, 0.08, 0.15, 0.3):
            for name, content in before.items():  # start again from the 600-row dataset
                (tmp_path / name).write_bytes(content)
            fake.pages_sent, fake.requests = 0, []
            _kill_when(_start(command), lambda: fake.pages_sent >= 2, delay_s)
            rows, described = _dataset_state(out)
            outcomes.append(rows)
            if rows == 600:
                assert snapshot(out) == before
            else:
                assert rows == len(klines)  # the whole new dataset, never a part
        code, stdout, _ = run_update(out, fake.url)
    assert code == 0
    pd.testing.assert_frame_equal(stored(out), recorded, check_dtype=False)
    assert _dataset_state(out) == (len(klines), True)
    assert set(outcomes) <= {600, len(klines)}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
