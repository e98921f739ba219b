"""ClickHouse as the prediction store: the DSN setting, the on-disk spool, the schema, and the sink
against a real ``clickhouse-server`` (18.16, started by the ``clickhouse`` fixture), in-process
and behind real ``bentoml serve`` / ``serve-grpc`` processes: every answer stored exactly once,
through ClickHouse outages and a ``kill -9`` of the service."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
from prometheus_client import REGISTRY

from artifact import read_reference
from client import GrpcClient, HttpClient, candles_payload
from devtools import REPO_ROOT, free_port, isolated_home, running_server
from features import FEATURE_NAMES, WARMUP_BARS
from monitoring.clickhouse_source import ClickHouseSource, Selection
from monitoring.drift_report import daily_drift, overall_drift
from monitoring.prediction_log import read_predictions
from serving.clickhouse import ClickHouseSink
from serving.logs import LOGGER_NAME
from serving.settings import ServeSettings
from stores.clickhouse import (
    PREDICTION_COLUMNS,
    SCHEMA_VERSION,
    ClickHouseSchemaError,
    ensure_schema,
    load_candles,
    parse_dsn,
)
from stores.spool import Spool
from tests.integration.test_monitoring import window_ends, windows_at
from tests.integration.test_service import metric_value
from tests.servers import server_env

# ---------------------------------------------------------------- the setting


def test_dsn_gives_host_port_database_and_url_encoded_credentials():
    dsn = parse_dsn("clickhouse://ml%40ops:p%3Ass@ch.internal:9440/btc_preds?secure=true")
    assert (dsn.host, dsn.port, dsn.database) == ("ch.internal", 9440, "btc_preds")
    assert (dsn.user, dsn.password, dsn.secure) == ("ml@ops", "p:ss", True)
    assert "p:ss" not in str(dsn) and "p%3Ass" not in str(dsn)
    plain = parse_dsn("clickhouse://127.0.0.1/preds")
    assert (plain.port, plain.user, plain.password, plain.secure) == (9000, "default", "", False)


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("http://127.0.0.1:9000/preds", "scheme 'http'"),
        ("clickhouse://127.0.0.1:9000/", "database"),
        ("clickhouse://127.0.0.1:9000/my-db", "database"),
        ("clickhouse://127.0.0.1:99999/preds", "port"),
        ("clickhouse://127.0.0.1:x/preds", "port"),
        ("clickhouse:///preds", "no host"),
        ("clickhouse://127.0.0.1/preds?compression=lz4", "unknown option"),
        ("clickhouse://127.0.0.1/preds?secure=maybe", "secure must be"),
    ],
)
def test_bad_dsn_is_refused_naming_the_setting_and_the_part(monkeypatch, url, names):
    monkeypatch.setenv("BTC_SERVE_CLICKHOUSE_URL", url)
    with pytest.raises(ValueError) as info:
        ServeSettings()
    message = str(info.value)
    assert "BTC_SERVE_CLICKHOUSE_URL" in message and names in message


def test_bad_dsn_error_does_not_echo_a_password(monkeypatch):
    monkeypatch.setenv("BTC_SERVE_CLICKHOUSE_URL", "clickhouse://u:hunter2@127.0.0.1:9000/a-b")
    with pytest.raises(ValueError) as info:
        ServeSettings()
    assert "hunter2" not in str(info.value)


def test_sink_is_off_by_default(monkeypatch):
    monkeypatch.delenv("BTC_SERVE_CLICKHOUSE_URL", raising=False)
    assert ServeSettings().clickhouse_dsn is None
    assert ServeSettings(clickhouse_url="  ").clickhouse_dsn is None


# ---------------------------------------------------------------- the spool


def _drain(spool: Spool) -> list[bytes]:
    out = []
    while (batch := spool.read(max_rows=3)) is not None:
        out += batch.payloads
        spool.ack(batch)
    return out


def test_spool_resumes_after_a_restart_from_what_was_acknowledged(tmp_path):
    spool = Spool.claim(tmp_path, header=b"h1", max_bytes=1 << 20, segment_bytes=60)
    for i in range(10):
        assert spool.append(b"record-%d" % i, rows=1, time_us=i)
    first = spool.read(max_rows=4)
    assert first is not None and first.header == b"h1"
    assert first.payloads == [b"record-%d" % i for i in range(4)]
    spool.ack(first)
    spool.read(max_rows=4)  # read but never acknowledged: the process "dies" here
    spool.close()

    again = Spool.claim(tmp_path, header=b"h2", max_bytes=1 << 20)
    assert again.directory == spool.directory and again.pending_rows == 6
    assert _drain(again) == [b"record-%d" % i for i in range(4, 10)]
    assert again.pending_rows == 0
    assert again.append(b"after", rows=2, time_us=99)
    batch = again.read(max_rows=10)
    assert batch is not None and batch.header == b"h2" and batch.payloads == [b"after"]
    segments = sorted(p.name for p in again.directory.glob("segment-*.log"))
    assert len(segments) == 1, "fully shipped segments are deleted"


def test_spool_skips_a_record_cut_short_by_a_crash_and_reports_it(tmp_path):
    spool = Spool.claim(tmp_path, header=b"h", max_bytes=1 << 20)
    spool.append(b"whole", rows=1, time_us=1)
    spool.close()
    (segment,) = spool.directory.glob("segment-*.log")
    with segment.open("ab") as f:
        f.write(b"3 2\t{half a rec")  # the process died mid-write
    again = Spool.claim(tmp_path, header=b"h", max_bytes=1 << 20)
    batch = again.read(max_rows=100)
    assert batch is not None and batch.payloads == [b"whole"]
    assert batch.torn_bytes == len(b"3 2\t{half a rec")
    again.ack(batch)
    assert again.read(max_rows=100) is None


def test_spool_refuses_records_past_its_bound(tmp_path):
    spool = Spool.claim(tmp_path, header=b"h", max_bytes=100)
    kept = [spool.append(b"x" * 20, rows=1, time_us=i) for i in range(6)]
    assert kept[:3] == [True] * 3 and not any(kept[4:])
    assert spool.pending_bytes <= 100
    _drain(spool)
    assert spool.append(b"x" * 20, rows=1, time_us=7), "room again once shipped"


def test_each_process_gets_its_own_spool_and_orphans_can_be_adopted(tmp_path):
    first = Spool.claim(tmp_path, header=b"a", max_bytes=1 << 20, preferred=1)
    second = Spool.claim(tmp_path, header=b"b", max_bytes=1 << 20, preferred=1)
    assert (first.directory.name, second.directory.name) == ("worker-1", "worker-0")
    assert Spool.adopt(first.directory) is None, "a live process's spool is not adoptable"
    first.append(b"left behind", rows=1, time_us=1)
    first.close()  # its process is gone
    assert Spool.others(tmp_path, second.directory) == [first.directory]
    orphan = Spool.adopt(first.directory)
    assert orphan is not None and orphan.pending_rows == 1
    assert _drain(orphan) == [b"left behind"]


# ---------------------------------------------------------------- schema and sink, in-process


def _database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def test_schema_is_created_idempotently_with_its_version(clickhouse):
    client, database = clickhouse.client(), _database()
    for _ in range(2):
        ensure_schema(client, database, FEATURE_NAMES)
    assert client.execute(f"SELECT version FROM {database}.schema_version") == [(SCHEMA_VERSION,)]
    columns = dict(
        client.execute(
            "SELECT name, type FROM system.columns WHERE database = %(d)s AND table = %(t)s",
            {"d": database, "t": "predictions"},
        )
    )
    assert columns == {**PREDICTION_COLUMNS, **dict.fromkeys(FEATURE_NAMES, "Float64")}
    engines = dict(
        client.execute(
            "SELECT name, engine FROM system.tables WHERE database = %(d)s", {"d": database}
        )
    )
    assert engines["predictions"] == engines["candles"] == "ReplacingMergeTree"
    # a model with one more feature: its column is added, older rows read NaN
    ensure_schema(client, database, [*FEATURE_NAMES, "new_feature"])
    client.execute(
        f"INSERT INTO {database}.predictions (model_tag, request_id) VALUES", [("m", "r")]
    )
    assert np.isnan(client.execute(f"SELECT new_feature FROM {database}.predictions")[0][0])


def test_schema_of_a_newer_version_is_refused(clickhouse):
    client, database = clickhouse.client(), _database()
    ensure_schema(client, database, FEATURE_NAMES)
    client.execute(f"INSERT INTO {database}.schema_version VALUES", [(SCHEMA_VERSION + 1, 0)])
    with pytest.raises(ClickHouseSchemaError, match="newer"):
        ensure_schema(client, database, FEATURE_NAMES)


def _answers(n: int, start: str = "2022-01-03T00:00:00Z", tag: str = "btcusdt_mlp:unit") -> list:
    stamps = pd.date_range(start, periods=n, freq="h")
    return [
        {
            "probability_up": 0.3 + 0.4 * i / max(n - 1, 1),
            "signal": "long" if i % 2 else "flat",
            "model_tag": tag,
            "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "horizon_bars": 1,
        }
        for i, ts in enumerate(stamps)
    ]


def _sink(url: str, spool_dir: Path, **options) -> ClickHouseSink:
    options = {"spool_max_bytes": 1 << 24, "flush_s": 0.1, "retry_max_s": 0.5, **options}
    return ClickHouseSink(
        parse_dsn(url), feature_names=FEATURE_NAMES, spool_dir=spool_dir, **options
    )


def _wait_rows(client, database: str, expected: int, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            (count,) = client.execute(f"SELECT count() FROM {database}.predictions FINAL")[0]
        except Exception:  # the database is created by the sink's first insert
            count = 0
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def test_sink_stores_every_row_with_its_values_exactly(clickhouse, tmp_path):
    database = _database()
    sink = _sink(clickhouse.url(database), tmp_path)
    sink.start()
    rng = np.random.default_rng(7)
    sent = {}
    for i in range(40):
        features = rng.normal(size=(5, len(FEATURE_NAMES))) * 10.0 ** rng.integers(-6, 6)
        answers = _answers(5, start=f"2022-01-{1 + i % 28:02d}T00:00:00Z")
        sink.record(features, answers, f"req-{i}")
        sent[f"req-{i}"] = (features, answers)
    client = clickhouse.client()
    assert _wait_rows(client, database, 200) == 200
    sink.stop()
    names = ", ".join(FEATURE_NAMES)
    rows = client.execute(
        f"SELECT request_id, window_index, toUnixTimestamp(candle_timestamp), probability_up, "
        f"signal, model_tag, horizon_bars, {names} FROM {database}.predictions FINAL"
    )
    for request_id, index, stamp, probability, signal_, tag, horizon, *values in rows:
        features, answers = sent[request_id]
        answer = answers[index]
        assert stamp == pd.Timestamp(answer["timestamp"]).timestamp()
        assert (probability, signal_, tag, horizon) == (
            answer["probability_up"],
            answer["signal"],
            answer["model_tag"],
            answer["horizon_bars"],
        )
        assert values == features[index].tolist()  # bit for bit
    assert REGISTRY.get_sample_value("btcusdt_clickhouse_rows_buffered") == 0


def test_a_batch_shipped_twice_is_stored_once(clickhouse, tmp_path):
    """The process dies after ClickHouse took a batch but before marking it shipped: the next
    process sends it again, and the table still holds each row once."""
    database = _database()
    sink = _sink(clickhouse.url(database), tmp_path)
    sink.start()
    sink.record(np.ones((3, len(FEATURE_NAMES))), _answers(3), "twice")
    client = clickhouse.client()
    assert _wait_rows(client, database, 3) == 3
    sink.stop()
    directory = sink.spool.directory
    (directory / "acked").unlink()  # as if the acknowledgement never reached the disk
    again = _sink(clickhouse.url(database), tmp_path)
    again.start()
    deadline = time.monotonic() + 20
    while client.execute(f"SELECT count() FROM {database}.predictions")[0][0] < 6:
        assert time.monotonic() < deadline, "the batch was not sent again"
        time.sleep(0.2)
    again.stop()
    assert client.execute(f"SELECT count() FROM {database}.predictions FINAL") == [(3,)]
    client.execute(f"OPTIMIZE TABLE {database}.predictions FINAL")
    assert client.execute(f"SELECT count() FROM {database}.predictions") == [(3,)]


class _Events(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_full_spool_drops_rows_counted_and_logged_and_answers_go_on(tmp_path):
    events = _Events()
    logging.getLogger(LOGGER_NAME).addHandler(events)
    label = {"reason": "spool_full"}
    before = REGISTRY.get_sample_value("btcusdt_clickhouse_rows_dropped_total", label) or 0.0
    try:
        unreachable = f"clickhouse://127.0.0.1:{free_port()}/nobody_listens"
        sink = _sink(unreachable, tmp_path, spool_max_bytes=64 * 1024)
        sink.start()
        features = np.zeros((10, len(FEATURE_NAMES)))
        for i in range(100):  # ~3 KB a request: the bound is reached after ~20
            sink.record(features, _answers(10), f"r{i}")
        spooled = sink.spool.pending_rows
        sink.stop()
    finally:
        logging.getLogger(LOGGER_NAME).removeHandler(events)
    dropped = REGISTRY.get_sample_value("btcusdt_clickhouse_rows_dropped_total", label) - before
    assert 100 <= spooled < 1000 and dropped == 1000 - spooled
    errors = [r for r in events.records if r.getMessage() == "clickhouse_rows_dropped"]
    assert errors and errors[0].levelno == logging.ERROR
    assert errors[0].fields["reason"] == "spool_full"
    failures = [r for r in events.records if r.getMessage() == "clickhouse_insert_failed"]
    assert failures and "nobody_listens" in failures[0].fields["clickhouse"]


# ---------------------------------------------------------------- real servers


def _windows(frame: pd.DataFrame, start: str, stop: str, n: int) -> list[pd.DataFrame]:
    return windows_at(frame, window_ends(frame, start, stop, n))


def _clickhouse_env(home: str, tag: str, url: str, spool: Path, overrides=None) -> dict:
    env = server_env(home, tag, overrides)
    return env | {
        "BTC_SERVE_CLICKHOUSE_URL": url,
        "BTC_SERVE_CLICKHOUSE_SPOOL_DIR": str(spool),
        "BTC_SERVE_CLICKHOUSE_FLUSH_S": "0.2",
        "BTC_SERVE_CLICKHOUSE_RETRY_MAX_S": "1",
    }


class Traffic:
    """Predict requests with known request ids; remembers every answered (request id, window)."""

    def __init__(self, client, prefix: str):
        self.client, self.prefix = client, prefix
        self.answered: dict[tuple[str, int], dict] = {}
        self.seconds: list[float] = []

    def send(self, windows: list[pd.DataFrame], *, batch: int) -> None:
        for start in range(0, len(windows), batch):
            chunk = windows[start : start + batch]
            request_id = f"{self.prefix}-{len(self.seconds)}"
            body = (
                {"candles": candles_payload(chunk[0])}
                if batch == 1
                else {"windows": [{"candles": candles_payload(w)} for w in chunk]}
            )
            started = time.perf_counter()
            answer = self.client.call("predict", body, request_id=request_id)
            self.seconds.append(time.perf_counter() - started)
            for index, one in enumerate(answer["predictions"] if batch > 1 else [answer]):
                self.answered[(request_id, index)] = one


def _stored(clickhouse, database: str) -> pd.DataFrame:
    names = ", ".join(FEATURE_NAMES)
    rows = clickhouse.client().execute(
        f"SELECT request_id, window_index, toUnixTimestamp(candle_timestamp), probability_up, "
        f"signal, model_tag, horizon_bars, {names} FROM {database}.predictions FINAL"
    )
    columns = ["request_id", "window_index", "candle_s", "probability_up", "signal", "model_tag"]
    return pd.DataFrame(rows, columns=[*columns, "horizon_bars", *FEATURE_NAMES])


def _wait_for(clickhouse, database: str, expected: int, timeout_s: float = 60.0) -> None:
    count = _wait_rows(clickhouse.client(), database, expected, timeout_s)
    assert count == expected, f"{count} rows in {database}.predictions, expected {expected}"
    time.sleep(1.0)  # nothing more arrives (no late duplicates)
    assert _wait_rows(clickhouse.client(), database, expected + 1, 0) == expected


@pytest.fixture(scope="module")
def served(clickhouse, trained_model_tag, btc_frame, tmp_path_factory):
    """HTTP and gRPC servers writing to one ClickHouse database (and their JSON logs). Phase 1:
    traffic with ClickHouse up. Phase 2: ClickHouse stopped mid-traffic, then started again."""
    database = "served"
    base = tmp_path_factory.mktemp("clickhouse-served")
    http_home = isolated_home(base / "http-home", os.environ["BENTOML_HOME"])
    grpc_home = isolated_home(base / "grpc-home", os.environ["BENTOML_HOME"])
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    url = clickhouse.url(database)
    http_env = _clickhouse_env(http_home, trained_model_tag, url, base / "http-spool")
    grpc_metrics = {"api_server": {"grpc": {"metrics": {"port": metrics_port}}}}
    grpc_env = _clickhouse_env(grpc_home, trained_model_tag, url, base / "grpc-spool", grpc_metrics)
    http_args = ["serve", "service:svc", "--host", "127.0.0.1", "--port", str(http_port)]
    grpc_args = ["serve-grpc", "service:svc", "--host", "127.0.0.1", "--port", str(grpc_port)]
    windows = _windows(btc_frame, "2021-12-01T00:00:00Z", "2022-02-20T00:00:00Z", 420)
    http_windows, grpc_windows = windows[0::2], windows[1::2]  # distinct candles per server
    result: dict = {"database": database, "http_home": http_home, "grpc_home": grpc_home}
    with (
        HttpClient(f"http://127.0.0.1:{http_port}", timeout_s=120) as http,
        GrpcClient(f"127.0.0.1:{grpc_port}", timeout_s=120) as grpc_client,
        running_server(
            http_args + ["--api-workers", "1"], http_env, base / "http.log", http.is_ready
        ),
        running_server(
            grpc_args + ["--api-workers", "1"], grpc_env, base / "grpc.log", grpc_client.is_ready
        ),
    ):
        over_http, over_grpc = Traffic(http, "http"), Traffic(grpc_client, "grpc")
        over_http.send(http_windows[:150], batch=30)
        over_http.send(http_windows[150:160], batch=1)
        # the same candles again, from longer windows (other features): the last answer counts
        ends = window_ends(btc_frame, "2021-12-01T00:00:00Z", "2022-02-20T00:00:00Z", 420)[:10:2]
        over_http.send([btc_frame.iloc[e - WARMUP_BARS - 30 : e + 1] for e in ends], batch=5)
        over_grpc.send(grpc_windows[:150], batch=25)
        over_grpc.send(grpc_windows[150:160], batch=1)
        up = {**over_http.answered, **over_grpc.answered}
        _wait_for(clickhouse, database, len(up))
        result["up"] = dict(up)
        result["up_metrics"] = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text

        clickhouse.stop()
        try:
            during = len(over_http.seconds)
            over_http.send(http_windows[160:200], batch=10)
            over_grpc.send(grpc_windows[160:200], batch=10)
            over_http.send(http_windows[200:210], batch=1)
            result["outage_seconds"] = over_http.seconds[during:]
            time.sleep(2.5)  # the gauges are refreshed after each (failed) attempt
            result["outage_metrics"] = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
            result["outage_grpc_metrics"] = httpx.get(f"http://127.0.0.1:{metrics_port}/").text
        finally:
            clickhouse.start()
        result["answered"] = {**over_http.answered, **over_grpc.answered}
        _wait_for(clickhouse, database, len(result["answered"]))
        result["after_metrics"] = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
    return result


def _sorted_rows(values: np.ndarray) -> np.ndarray:
    return values[np.lexsort(values.T[::-1])]


@pytest.mark.integration
def test_every_prediction_over_http_and_grpc_is_stored_once_with_its_features(
    served, clickhouse, trained_model_tag
):
    stored = _stored(clickhouse, served["database"])
    keys = list(zip(stored["request_id"], stored["window_index"], strict=True))
    answered = served["answered"]
    assert len(keys) == len(set(keys)) == len(answered)
    assert set(keys) == set(answered)
    assert {k[0].split("-")[0] for k in keys} == {"http", "grpc"}
    by_key = stored.set_index(["request_id", "window_index"])
    for key, answer in answered.items():
        row = by_key.loc[key]
        assert row["probability_up"] == answer["probability_up"]
        assert row["signal"] == answer["signal"] and row["model_tag"] == trained_model_tag
        assert row["horizon_bars"] == answer["horizon_bars"]
        assert row["candle_s"] == pd.Timestamp(answer["timestamp"]).timestamp()
    # the features are the ones the JSON prediction log holds for the same answers, bit for bit
    logged = pd.concat(
        read_predictions(Path(home) / "prediction_logs", keep_duplicates=True)
        for home in (served["http_home"], served["grpc_home"])
    )
    assert len(logged) == len(stored)
    np.testing.assert_array_equal(
        _sorted_rows(stored[list(FEATURE_NAMES)].to_numpy()),
        _sorted_rows(logged[list(FEATURE_NAMES)].to_numpy()),
    )
    assert metric_value(served["after_metrics"], "btcusdt_clickhouse_rows_sent_total") > 0
    assert metric_value(served["after_metrics"], "btcusdt_clickhouse_rows_buffered") == 0


@pytest.mark.integration
def test_clickhouse_stopped_mid_traffic_loses_and_doubles_nothing(served, clickhouse):
    outage = served["outage_seconds"]
    assert outage and max(outage) < 5.0, "answers do not wait for ClickHouse"
    waiting = len(served["answered"]) - len(served["up"])
    http_waiting = sum(1 for k in served["answered"] if k[0].startswith("http")) - sum(
        1 for k in served["up"] if k[0].startswith("http")
    )
    text = served["outage_metrics"]
    assert metric_value(text, "btcusdt_clickhouse_rows_buffered") == http_waiting > 0
    assert metric_value(text, "btcusdt_clickhouse_oldest_unsent_age_seconds") > 1.0
    assert metric_value(text, "btcusdt_clickhouse_insert_failures_total") >= 1
    assert metric_value(text, "btcusdt_clickhouse_rows_dropped_total") == 0
    grpc_text = served["outage_grpc_metrics"]
    assert metric_value(grpc_text, "btcusdt_clickhouse_rows_buffered") == waiting - http_waiting
    client = clickhouse.client()
    database = served["database"]
    unique = f"SELECT uniqExact(request_id, window_index) FROM {database}.predictions"
    assert client.execute(unique) == [(len(served["answered"]),)]
    assert (
        metric_value(served["after_metrics"], "btcusdt_clickhouse_oldest_unsent_age_seconds") == 0
    )


def _kill_9(pid: int) -> None:
    """SIGKILL a server and every process under it at once, as when its container is killed
    (BentoML's workers run in sessions of their own: the process group is not enough)."""
    parent = psutil.Process(pid)
    for process in [*parent.children(recursive=True), parent]:
        process.send_signal(signal.SIGKILL)


@pytest.mark.integration
def test_rows_spooled_when_the_service_is_killed_arrive_after_restart(
    clickhouse, trained_model_tag, btc_frame, tmp_path
):
    database = "killed"
    home = isolated_home(tmp_path / "home", os.environ["BENTOML_HOME"])
    port = free_port()
    env = _clickhouse_env(home, trained_model_tag, clickhouse.url(database), tmp_path / "spool")
    args = [
        "serve",
        "service:svc",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-workers",
        "2",
    ]
    windows = _windows(btc_frame, "2022-01-01T00:00:00Z", "2022-01-20T00:00:00Z", 40)
    clickhouse.stop()
    try:
        with HttpClient(f"http://127.0.0.1:{port}", timeout_s=120) as http:
            with running_server(args, env, tmp_path / "first.log", http.is_ready) as process:
                traffic = Traffic(http, "killed")
                traffic.send(windows[:30], batch=10)
                traffic.send(windows[30:], batch=1)
                _kill_9(process.pid)
                process.wait(timeout=30)
    finally:
        clickhouse.start()
    assert _wait_rows(clickhouse.client(), database, 1, timeout_s=3) == 0, "nothing sent yet"
    # each API worker had its own spool; together they hold every answered row
    spools = sorted((tmp_path / "spool").iterdir())
    assert [d.name for d in spools] == ["worker-1", "worker-2"]
    left = [Spool.adopt(d) for d in spools]  # the killed processes no longer hold them
    assert all(left) and sum(s.pending_rows for s in left) == len(traffic.answered)
    for spool in left:
        spool.close()
    with HttpClient(f"http://127.0.0.1:{port}", timeout_s=120) as http:
        with running_server(args, env, tmp_path / "second.log", http.is_ready):
            _wait_for(clickhouse, database, len(traffic.answered))
    stored = _stored(clickhouse, database)
    assert set(zip(stored["request_id"], stored["window_index"], strict=True)) == set(
        traffic.answered
    )


@pytest.mark.integration
def test_bad_clickhouse_url_stops_the_start_naming_the_setting(trained_model_tag, tmp_path):
    home = isolated_home(tmp_path / "home", os.environ["BENTOML_HOME"])
    port = free_port()
    env = server_env(home, trained_model_tag) | {
        "BTC_SERVE_CLICKHOUSE_URL": "clickhouse://u:hunter2@127.0.0.1:9000/not-a-name"
    }
    args = ["serve", "service:svc", "--host", "127.0.0.1", "--port", str(port)]
    with HttpClient(f"http://127.0.0.1:{port}") as http:
        with pytest.raises(RuntimeError, match="server exited") as info:
            with running_server(args, env, tmp_path / "server.log", http.is_ready):
                pass
    message = str(info.value)
    assert "BTC_SERVE_CLICKHOUSE_URL" in message and "database must be a name" in message
    assert "hunter2" not in (tmp_path / "server.log").read_text()


# ---------------------------------------------------------------- reading it back


def _both_logs(served, tmp_path: Path) -> Path:
    """The HTTP and the gRPC server's JSON prediction logs in one folder."""
    root = tmp_path / "logs"
    for home in ("http_home", "grpc_home"):
        shutil.copytree(Path(served[home]) / "prediction_logs", root / home)
    return root


def _assert_same_drift(mine: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert mine.columns.tolist() == theirs.columns.tolist()
    for column in mine.columns:
        if column in ("psi", "ks"):
            np.testing.assert_allclose(mine[column], theirs[column], rtol=0, atol=1e-9)
        else:
            assert mine[column].tolist() == theirs[column].tolist(), column


@pytest.mark.integration
@pytest.mark.parametrize(
    "selection",
    [
        {},
        {"keep_duplicates": True},
        {"since": "2021-12-20T00:00:00Z", "until": "2022-01-31T23:00:00Z"},
    ],
    ids=["last-answer-per-candle", "every-answer", "since-until"],
)
def test_drift_from_clickhouse_equals_drift_from_the_json_lines(
    served, clickhouse, trained_model_tag, tmp_path, selection
):
    profile = read_reference(trained_model_tag)
    bounds = {k: pd.Timestamp(v) for k, v in selection.items() if k in ("since", "until")}
    keep = selection.get("keep_duplicates", False)
    logged = read_predictions(_both_logs(served, tmp_path), keep_duplicates=keep, **bounds)
    overall = overall_drift(logged, profile)
    daily = daily_drift(logged, profile, window_days=7, min_rows=20)
    source = ClickHouseSource(clickhouse.url(served["database"]))
    tables = source.drift_tables(
        Selection(trained_model_tag, keep_duplicates=keep, **bounds),
        profile,
        window_days=7,
        min_rows=20,
    )
    assert tables.rows == len(logged) == overall["rows"].iloc[0]
    assert (tables.first, tables.last) == tuple(logged["candle_timestamp"].iloc[[0, -1]])
    _assert_same_drift(tables.overall, overall)
    _assert_same_drift(tables.daily, daily)
    assert daily["psi"].notna().sum() > 100 and daily["psi"].isna().any()  # both kinds of days


@pytest.mark.integration
def test_reference_edges_reach_clickhouse_exactly_as_sql_literals(clickhouse, trained_model_tag):
    profile = read_reference(trained_model_tag)
    for name in FEATURE_NAMES:
        edges = profile["features"][name]["edges"]
        literal = ", ".join(repr(float(e)) for e in edges)
        assert clickhouse.client().execute(f"SELECT [{literal}]")[0][0] == edges, name


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _report(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if not line.startswith("wrote ")]


@pytest.mark.integration
def test_drift_cli_with_a_clickhouse_source_reports_what_the_log_gives(
    served, clickhouse, tmp_path
):
    common = ("--window-days", "7", "--min-rows", "20")
    logs = str(_both_logs(served, tmp_path))
    from_log = _cli("monitoring.drift", "--logs", logs, "--out", str(tmp_path / "a"), *common)
    from_store = _cli(
        "monitoring.drift",
        *("--source", clickhouse.url(served["database"]), "--out", str(tmp_path / "b"), *common),
    )
    assert from_log.returncode == from_store.returncode == 0, from_store.stderr
    assert _report(from_store.stdout) == _report(from_log.stdout)
    for name in ("drift_overall.csv", "drift_by_day.csv"):
        mine, theirs = (pd.read_csv(tmp_path / d / name) for d in ("b", "a"))
        _assert_same_drift(mine, theirs)


@pytest.mark.integration
def test_outcomes_from_clickhouse_equal_outcomes_from_the_json_lines(
    served, clickhouse, btc_frame, trained_model_tag, tmp_path
):
    last = max(pd.Timestamp(a["timestamp"]) for a in served["answered"].values())
    stamps = btc_frame["timestamp"]
    candles = btc_frame[(stamps >= pd.Timestamp("2021-11-01", tz="UTC")) & (stamps <= last)]
    data = tmp_path / "candles.csv"
    candles.assign(timestamp=candles["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(
        data, index=False
    )
    url = clickhouse.url(served["database"])
    loaded = _cli("cli", "load-candles", "--to", url, "--data", str(data))
    assert loaded.returncode == 0, loaded.stderr
    assert f"loaded {len(candles)} candles" in loaded.stdout
    assert load_candles(clickhouse.client(), served["database"], candles.iloc[-100:]) == 100
    common = ("--model-tag", trained_model_tag, "--window", "100")
    logs = str(_both_logs(served, tmp_path))
    from_log = _cli(
        "monitoring.outcomes",
        *("--logs", logs, "--data", str(data), "--out", str(tmp_path / "a"), *common),
    )
    from_store = _cli(
        "monitoring.outcomes",
        *("--source", url, "--data", url, "--out", str(tmp_path / "b"), *common),
    )
    assert from_log.returncode == from_store.returncode == 0, from_store.stderr
    assert _report(from_store.stdout) == _report(from_log.stdout)
    assert "1 pending" in from_store.stdout  # the newest candle's outcome is not known yet
    for name in ("outcomes.csv", "rolling.csv"):
        mine, theirs = (pd.read_csv(tmp_path / d / name) for d in ("b", "a"))
        assert mine.columns.tolist() == theirs.columns.tolist()
        assert len(mine) == len(theirs) > 0
        numeric = mine.select_dtypes("number").columns
        np.testing.assert_allclose(mine[numeric], theirs[numeric], rtol=0, atol=1e-9)
        other = mine.columns.difference(numeric)
        assert mine[other].equals(theirs[other])


def test_monitoring_cli_with_an_unreachable_clickhouse_is_a_one_line_error(tmp_path):
    url = f"clickhouse://127.0.0.1:{free_port()}/nothing_here"
    for module in ("monitoring.drift", "monitoring.outcomes"):
        done = _cli(module, "--source", url, "--out", str(tmp_path / module))
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"error: {url}") and "onnection refused" in line
