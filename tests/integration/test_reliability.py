"""Reliability of the served model under bad input, oversized input, load and faults, on real
``bentoml serve`` / ``bentoml serve-grpc`` processes (bounded in time for CI)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import grpc
import httpx
import numpy as np
import psutil
import pytest
import schemathesis
import yaml
from bentoml.grpc.v1 import service_pb2, service_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import DataGenerationMethod

from client import GrpcClient, HttpClient, ServiceError, candles_payload
from devtools import REPO_ROOT, free_port, isolated_home, running_server
from features import OHLCV_COLUMNS, WARMUP_BARS, compute_window_features
from tests.integration.test_service import metric_value, offline_probability
from tests.servers import server_env

pytestmark = pytest.mark.integration

API_PATHS = ("/predict", "/indicators", "/model_info")
FUZZ_EXAMPLES = 40  # per operation and data-generation method; bounded for CI


def start_http(home: str, tag: str, log: Path, **env: str):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "service:svc", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--api-workers", "1"]
    client = HttpClient(url)
    return url, running_server(args, server_env(home, tag) | env, log, client.is_ready)


def server_processes(server: subprocess.Popen) -> dict[str, psutil.Process]:
    """``api``, ``features``, ``direction``: the worker processes of a ``bentoml serve``."""
    found = {}
    for child in psutil.Process(server.pid).children(recursive=True):
        command = " ".join(child.cmdline())
        if "http_api_server" in command or "grpc_api_server" in command:
            found["api"] = child
        for runner in ("features", "direction"):
            if f"--runner-name {runner}" in command:
                found[runner] = child
    return found


@pytest.fixture(scope="module")
def server(trained_model_tag, tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability-http")
    home = isolated_home(base / "home", os.environ["BENTOML_HOME"])
    url, context = start_http(home, trained_model_tag, base / "server.log")
    with context as process:
        yield {"url": url, "process": process, "log": base / "server.log"}


@pytest.fixture(scope="module")
def windows(btc_slice):
    """24 real windows of different lengths (241 .. 701 candles)."""
    return [
        btc_slice.iloc[start : start + WARMUP_BARS + 1 + 20 * i].reset_index(drop=True)
        for i, start in enumerate(range(0, 2400, 100))
    ]


def assert_healthy(url: str, window, offline) -> None:
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    with HttpClient(url) as client:
        answer = client.predict(window)
    assert answer["probability_up"] == pytest.approx(offline_probability(offline, window), abs=1e-6)


# ---------------------------------------------------------------- fuzzing from /docs.json


def fuzz_operation(operation, seen: Counter, problems: list[str]):
    """A hypothesis test sending ``FUZZ_EXAMPLES`` generated requests to one operation."""

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy())
    def fuzz(case) -> None:
        response = case.call(timeout=60)
        seen[f"{operation.path} {response.status_code}"] += 1
        body = case.body if isinstance(case.body, dict) else {}
        windows = body.get("windows") if isinstance(body.get("windows"), list) else []
        for window in [body, *(w for w in windows if isinstance(w, dict))]:
            candles = window.get("candles")
            if isinstance(candles, list) and any(isinstance(c, dict) for c in candles):
                seen[f"{operation.path} candle objects"] += 1
            if isinstance(candles, dict) and any(isinstance(c, list) for c in candles.values()):
                seen[f"{operation.path} candle columns"] += 1
        if isinstance(body.get("windows"), list):
            seen[f"{operation.path} windows"] += 1
        where = f"{case.method} {operation.path} {str(case.body)[:200]!r}"
        if response.status_code >= 500:
            problems.append(f"{where}: {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400 and operation.path in API_PATHS:
            answer = response.json()
            if set(answer) != {"error"} or not str(answer["error"]).strip():
                problems.append(f"{where}: {response.status_code} without a clear error")

    return fuzz


def test_fuzzing_the_openapi_document_finds_no_server_error(server, windows, offline):
    url = server["url"]
    schema = schemathesis.from_uri(
        f"{url}/docs.json",
        base_url=url,
        data_generation_methods=[DataGenerationMethod.positive, DataGenerationMethod.negative],
    )
    seen: Counter[str] = Counter()
    problems: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= set(API_PATHS)
    for operation in operations:
        fuzz_operation(operation, seen, problems)()
    assert problems == []
    # The generator really builds request objects from the schemas (hypothesis-jsonschema):
    # windows in both forms (candle objects, candle columns; alone or in a batch), batch
    # bodies, and some valid model_info requests.
    for path in ("/predict", "/indicators"):
        assert seen[f"{path} candle objects"] + seen[f"{path} candle columns"] >= 10, seen
        assert seen[f"{path} candle objects"] >= 1 and seen[f"{path} candle columns"] >= 1, seen
    assert seen["/predict windows"] >= 5
    assert seen["/predict 400"] >= FUZZ_EXAMPLES and seen["/model_info 200"] >= 1
    assert_healthy(url, windows[0], offline)


# ---------------------------------------------------------------- payload limits


def _timed_post(url: str, content, headers: dict | None = None) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = httpx.post(url, content=content, headers=headers or {}, timeout=60)
    return response, time.perf_counter() - started


def test_oversized_requests_are_refused_fast_without_memory_growth(
    server, windows, offline, btc_frame
):
    url = f"{server['url']}/predict"
    api = server_processes(server["process"])["api"]
    json_headers = {"Content-Type": "application/json"}
    huge_window = json.dumps({"candles": candles_payload(btc_frame) * 3}).encode()
    assert 14 * 2**20 < len(huge_window) < 16 * 2**20  # just under the body limit

    def streamed(n_mib: int):
        for _ in range(n_mib):
            yield b" " * 2**20

    cases = {
        "declared 64 MiB": (lambda: b" " * (64 * 2**20), 413, "larger than the limit"),
        "streamed 64 MiB": (lambda: streamed(64), 413, "larger than the limit"),
        "127k-candle window": (lambda: huge_window, 400, "at most 2048 candles per window"),
        "65 windows": (
            lambda: json.dumps({"windows": [{"candles": candles_payload(windows[0])}] * 65}),
            400,
            "at most 64 windows per request",
        ),
        "2049 candles in a batch": (
            lambda: json.dumps({"windows": [{"candles": candles_payload(btc_frame.iloc[:2049])}]}),
            400,
            "windows[0].candles: at most 2048 candles per window, got 2049",
        ),
    }
    timings: dict[str, float] = {}
    rss_mib = [api.memory_info().rss / 2**20]
    for _ in range(5):  # the first rounds set the allocator's high-water mark
        for name, (body, status, message) in cases.items():
            response, seconds = _timed_post(url, body(), json_headers)
            assert response.status_code == status, (name, response.text[:200])
            assert message in response.json()["error"], name
            timings[name] = max(timings.get(name, 0.0), seconds)
        rss_mib.append(api.memory_info().rss / 2**20)
    print(f"slowest refusal (s): {timings}; API worker RSS (MiB) per round: {rss_mib}")
    assert max(timings.values()) < 5.0, timings
    # ~750 MiB were sent. Decoding the 15 MiB JSON body costs a transient ~10x in Python
    # objects and the C allocator keeps part of it as a high-water mark that rises in steps
    # (measured: +25-40 MiB over the first two rounds, then single steps of up to ~30 MiB at
    # unpredictable rounds, flat at +~100 MiB after ~70 such bodies). So the bound is on the
    # total and on the trend, not on any one round: all five rounds stay under 160 MiB, and the
    # last three (~450 MiB sent) grow by less than 45 MiB, which keeping the 15 MiB body (or
    # either 64 MiB one) once per round would reach.
    assert rss_mib[-1] - rss_mib[0] < 160, rss_mib
    assert rss_mib[-1] - rss_mib[2] < 45, rss_mib
    assert_healthy(server["url"], windows[1], offline)


def test_grpc_message_over_the_limit_is_refused(grpc_address, windows):
    with grpc.insecure_channel(
        grpc_address, options=[("grpc.max_send_message_length", 64 * 2**20)]
    ) as channel:
        stub = service_pb2_grpc.BentoServiceStub(channel)
        request = service_pb2.Request(api_name="predict", serialized_bytes=b" " * (17 * 2**20))
        with pytest.raises(grpc.RpcError) as refused:
            stub.Call(request, timeout=60)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with GrpcClient(grpc_address) as client:
        assert 0 <= client.predict(windows[0])["probability_up"] <= 1


# ---------------------------------------------------------------- concurrency


def test_many_concurrent_clients_over_http_and_grpc_match_sequential_calls(
    server, grpc_address, windows, offline
):
    with HttpClient(server["url"]) as client:
        sequential = {i: client.predict(w) for i, w in enumerate(windows)}
        features = {i: client.indicators(w)["values"] for i, w in enumerate(windows[:6])}
    for i, window in enumerate(windows):
        expected = offline_probability(offline, window)
        assert sequential[i]["probability_up"] == pytest.approx(expected, abs=1e-6)

    duration_s = 20.0
    deadline = time.monotonic() + duration_s
    errors: list[str] = []
    mismatches: list[str] = []
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def client_loop(number: int) -> None:
        over_grpc = number % 2 == 1
        client = GrpcClient(grpc_address) if over_grpc else HttpClient(server["url"])
        order = np.random.default_rng(number).permutation(len(windows))
        with client:
            step = 0
            while time.monotonic() < deadline:
                i = int(order[step % len(order)])
                step += 1
                try:
                    if i < len(features) and step % 3 == 0:
                        got = client.indicators(windows[i])["values"]
                        same = got == pytest.approx(features[i], rel=1e-12)
                    else:
                        answer = client.predict(windows[i])
                        reference = sequential[i]
                        same = answer["probability_up"] == pytest.approx(
                            reference["probability_up"], abs=1e-6
                        ) and {k: v for k, v in answer.items() if k != "probability_up"} == {
                            k: v for k, v in reference.items() if k != "probability_up"
                        }
                except (ServiceError, httpx.HTTPError, grpc.RpcError) as exc:
                    with lock:
                        errors.append(f"client {number}: {exc!r}"[:300])
                    continue
                with lock:
                    calls["grpc" if over_grpc else "http"] += 1
                    if not same:
                        mismatches.append(f"client {number}, window {i}")

    n_clients = 24
    with ThreadPoolExecutor(max_workers=n_clients) as pool:
        list(pool.map(client_loop, range(n_clients)))
    print(f"{n_clients} clients for {duration_s:.0f} s: {dict(calls)} answers")
    assert errors == []
    assert mismatches == []
    assert calls["http"] >= 50 and calls["grpc"] >= 50, calls


# ---------------------------------------------------------------- faults


def _load(url: str, body: bytes, stop: threading.Event, out: list, n_threads: int = 4) -> list:
    def loop() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    response = http.post(
                        url, content=body, headers={"Content-Type": "application/json"}
                    )
                except httpx.HTTPError as exc:  # a hang (timeout) or a dropped connection
                    out.append((started, time.monotonic() - started, repr(exc), None))
                    continue
                out.append((started, time.monotonic() - started, response.status_code, response))

    threads = [threading.Thread(target=loop) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    return threads


def _answer(api: str, response: httpx.Response) -> float:
    """What is compared across the kill: P(up), or the first feature of ``indicators``."""
    data = response.json()
    return data["probability_up"] if api == "predict" else next(iter(data["values"].values()))


# The runner each API calls: predict -> direction (features + model), indicators -> features.
@pytest.mark.parametrize(("runner", "api"), [("features", "indicators"), ("direction", "predict")])
def test_a_killed_runner_gives_prompt_503s_then_the_service_recovers(
    trained_model_tag, tmp_path, windows, offline, runner, api
):
    home = isolated_home(tmp_path / "home", os.environ["BENTOML_HOME"])
    server_url, context = start_http(home, trained_model_tag, tmp_path / "server.log")
    url = f"{server_url}/{api}"
    window = windows[3]
    body = json.dumps({"candles": candles_payload(window)}).encode()
    if api == "predict":
        expected = offline_probability(offline, window)
    else:
        expected = float(
            compute_window_features(window[list(OHLCV_COLUMNS)].to_numpy()[None])[0, 0]
        )
    with context as server:
        victim = server_processes(server)[runner]
        stop = threading.Event()
        results: list = []
        threads = _load(url, body, stop, results)
        time.sleep(2)
        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        deadline = killed_at + 90
        recovered_at = None
        while time.monotonic() < deadline and recovered_at is None:
            time.sleep(0.2)
            after = [r for r in list(results) if r[0] > killed_at]
            refused = [r for r in after if r[2] == 503]
            if refused and any(r[2] == 200 and r[0] > refused[-1][0] for r in after):
                recovered_at = time.monotonic()
        time.sleep(2)  # keep the load on after recovery
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
        assert recovered_at is not None, Counter(r[2] for r in results)

        statuses = Counter(r[2] for r in results)
        metrics = httpx.get(f"{server_url}/metrics").text
        for status in (200, 503):  # what operators alert on: the code each client received
            counted = metric_value(
                metrics,
                "bentoml_api_server_request_total",
                endpoint=f"/{api}",
                http_response_code=str(status),
            )
            assert counted == statuses[status], (status, counted, statuses)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[503] >= 1 and statuses[200] >= 1
        for _, _, status, response in results:
            if status == 503:
                assert (
                    set(response.json()) == {"error"} and "unavailable" in response.json()["error"]
                )
        slowest = max(seconds for started, seconds, *_ in results if started > killed_at)
        print(
            f"{runner} killed: {dict(statuses)}, slowest answer after the kill {slowest:.2f} s, "
            f"recovered after {recovered_at - killed_at:.1f} s"
        )
        assert slowest < 6.0, f"a request waited {slowest:.1f} s for the runner"
        restarted = server_processes(server)[runner]
        assert restarted.pid != victim.pid  # BentoML restarted it, nobody else did
        ok = [r for r in results if r[2] == 200]
        for *_, response in ok[-10:]:
            assert _answer(api, response) == pytest.approx(expected, rel=1e-9, abs=1e-6)

        # An idle kill: no request in flight notices it; the next caller must not hang either.
        victim = restarted
        victim.send_signal(signal.SIGKILL)
        time.sleep(0.5)
        response, seconds = _timed_post(url, body, {"Content-Type": "application/json"})
        assert response.status_code in (200, 503) and seconds < 6.0, (response.text, seconds)
        print(f"{runner} killed while idle: next call {response.status_code} in {seconds:.2f} s")
        recovery_deadline = time.monotonic() + 90
        while time.monotonic() < recovery_deadline:
            response, _ = _timed_post(url, body, {"Content-Type": "application/json"})
            if response.status_code == 200:
                break
            assert response.status_code == 503
            time.sleep(0.5)
        assert _answer(api, response) == pytest.approx(expected, rel=1e-9, abs=1e-6)
    events = [
        json.loads(line)["event"]
        for line in (tmp_path / "server.log").read_text().splitlines()
        if line.startswith("{") and '"runner_' in line
    ]
    assert "runner_down" in events and "runner_up" in events


# ---------------------------------------------------------------- start-up refusals


@pytest.fixture
def broken_store(trained_model_tag, tmp_path):
    """A store holding one copy of the session model, to be broken by the test."""
    source = Path(bentoml.models.get(trained_model_tag).path)
    name, version = trained_model_tag.split(":")
    target = tmp_path / "home" / "models" / name / version
    shutil.copytree(source, target)
    return tmp_path / "home", target


def _corrupt_weights(model_dir: Path) -> None:
    data = bytearray((model_dir / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_dir / "model.onnx").write_bytes(bytes(data))


def _remove_scaler(model_dir: Path) -> None:
    (model_dir / "scaler.json").unlink()


def _other_feature_contract(model_dir: Path) -> None:
    info = yaml.safe_load((model_dir / "model.yaml").read_text())
    info["metadata"]["feature_names"] = list(reversed(info["metadata"]["feature_names"]))
    (model_dir / "model.yaml").write_text(yaml.safe_dump(info, sort_keys=False))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_corrupt_weights, "file model.onnx is corrupted (sha256 mismatch)"),
        (_remove_scaler, "file scaler.json is missing"),
        (_other_feature_contract, "feature contract mismatch: model was trained on ['ema_dist_50'"),
    ],
    ids=["corrupted_file", "missing_file", "contract_mismatch"],
)
def test_start_up_refuses_a_broken_model_and_says_which_and_why(
    broken_store, trained_model_tag, damage, reason
):
    home, model_dir = broken_store
    damage(model_dir)
    port = free_port()
    started = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", "service:svc", "--port", str(port)],
        cwd=REPO_ROOT,
        env=server_env(str(home), trained_model_tag),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode != 0
    assert f"ModelContractError: {trained_model_tag}: {reason}" in started.stderr
    with pytest.raises(httpx.TransportError):  # nothing was left serving
        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)


def test_grpc_server_errors_are_counted_and_logged_as_server_errors(
    trained_model_tag, tmp_path, windows
):
    """A killed runner over gRPC: UNAVAILABLE to the client, ``503`` in the metrics and the
    access log (``grpc_status=14``), then OK again; nothing is counted under another code."""
    port, metrics_port = free_port(), free_port()
    home = isolated_home(tmp_path / "home", os.environ["BENTOML_HOME"])
    env = server_env(
        home, trained_model_tag, {"api_server": {"grpc": {"metrics": {"port": metrics_port}}}}
    )
    args = ["serve-grpc", "service:svc", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--api-workers", "1"]
    log = tmp_path / "server.log"
    codes: Counter = Counter()
    with GrpcClient(f"127.0.0.1:{port}") as client:
        with running_server(args, env, log, client.is_ready) as server:
            client.predict(windows[0])
            codes["OK"] += 1
            server_processes(server)["direction"].send_signal(signal.SIGKILL)
            deadline = time.monotonic() + 90
            recovered = False
            while time.monotonic() < deadline and not recovered:
                try:
                    client.predict(windows[0])
                    codes["OK"] += 1
                    recovered = codes["UNAVAILABLE"] > 0
                except ServiceError as exc:
                    codes[exc.status] += 1
                    time.sleep(0.2)
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/").text
    assert set(codes) == {"OK", "UNAVAILABLE"}, codes

    def counted(code: str) -> float:
        return metric_value(
            metrics, "bentoml_api_server_request_total", api_name="predict", http_response_code=code
        )

    assert counted("503") == codes["UNAVAILABLE"]
    assert counted("200") == codes["OK"]
    assert counted("400") == counted("500") == 0
    access = [line for line in log.read_text().splitlines() if "BentoService/Call" in line]
    assert sum("http_status=503,grpc_status=14," in line for line in access) == codes["UNAVAILABLE"]
