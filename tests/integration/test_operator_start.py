"""What an operator meets on day one: ``make serve`` and ``make serve-grpc`` side by side, each
with its own metrics, and a start-up output that says once when the service is ready."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from client import GrpcClient, HttpClient
from devtools import REPO_ROOT, START_TIMEOUT_S, free_port, stop, tail
from tests.integration.test_service import metric_value

pytestmark = pytest.mark.integration

VENV = Path(sys.executable).parent.parent


def make_server(target: str, log: Path, **variables: str) -> subprocess.Popen:
    """``make <target>`` with the test's venv (never rebuilt: ``-o``) and ``variables``."""
    command = ["make", "--no-print-directory", "-o", f"{VENV}/.installed", f"VENV={VENV}", target]
    command += [f"{k}={v}" for k, v in variables.items()]
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_until(is_ready, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not is_ready():
        assert process.poll() is None, tail(log)
        assert time.monotonic() < deadline, tail(log)
        time.sleep(0.5)


def json_events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def make_servers(trained_model_tag, tmp_path_factory):
    """``make serve`` and ``make serve-grpc`` at once, on free ports, with the user's (here the
    test session's) model store."""
    base = tmp_path_factory.mktemp("make-servers")
    http_port, grpc_port, grpc_metrics_port = free_port(), free_port(), free_port()
    common = {
        "BENTOML_HOME": os.environ["BENTOML_HOME"],
        "SERVER_HOMES": str(base / "servers"),
    }
    os.environ["BTC_SERVE_MODEL_TAG"] = trained_model_tag
    os.environ["BENTOML_CONFIG_OPTIONS"] = f"api_server.grpc.metrics.port={grpc_metrics_port}"
    try:
        http_log, grpc_log = base / "http.log", base / "grpc.log"
        http_process = make_server("serve", http_log, HTTP_PORT=str(http_port), **common)
        grpc_process = make_server("serve-grpc", grpc_log, GRPC_PORT=str(grpc_port), **common)
    finally:
        del os.environ["BTC_SERVE_MODEL_TAG"], os.environ["BENTOML_CONFIG_OPTIONS"]
    http_url = f"http://127.0.0.1:{http_port}"
    try:
        with HttpClient(http_url) as http, GrpcClient(f"127.0.0.1:{grpc_port}") as grpc:
            wait_until(http.is_ready, http_process, http_log)
            wait_until(grpc.is_ready, grpc_process, grpc_log)
            yield {
                "http": http,
                "grpc": grpc,
                "http_url": http_url,
                "grpc_metrics": f"http://127.0.0.1:{grpc_metrics_port}/",
                "logs": {"http": http_log, "grpc": grpc_log},
                "ports": {"http": http_port, "grpc": grpc_port},
            }
    finally:
        stop(http_process)
        stop(grpc_process)


def test_make_serve_and_serve_grpc_side_by_side_export_their_own_metrics(make_servers, btc_slice):
    window = btc_slice.iloc[:300]
    for _ in range(3):
        make_servers["http"].predict(window)
    make_servers["grpc"].predict(window)
    http_metrics = httpx.get(f"{make_servers['http_url']}/metrics").text
    grpc_metrics = httpx.get(make_servers["grpc_metrics"]).text
    assert metric_value(http_metrics, "btcusdt_probability_up_count") == 3
    assert metric_value(grpc_metrics, "btcusdt_probability_up_count") == 1
    assert 'api_name="predict"' not in http_metrics  # the gRPC server's request counter
    assert 'endpoint="/predict"' not in grpc_metrics  # the HTTP server's request counter


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_start_up_prints_one_ready_line_and_no_deprecation_warnings(
    make_servers, trained_model_tag, protocol
):
    log = make_servers["logs"][protocol]
    text = log.read_text()
    assert "BentoMLDeprecationWarning" not in text
    ready = [e for e in json_events(log) if e["event"] == "ready"]
    assert len(ready) == 1, ready
    (event,) = ready
    assert event["model_tag"] == trained_model_tag and event["protocol"] == protocol
    assert event["address"].endswith(f":{make_servers['ports'][protocol]}")
    assert "legacy API" in event["note"]
