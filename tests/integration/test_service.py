"""The service as users meet it: real ``bentoml serve`` and ``bentoml serve-grpc`` processes on
loopback ports, the session's trained model, the client package, real BTCUSDT candles."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
from bentoml.grpc.v1 import service_pb2, service_pb2_grpc

from client import GrpcClient, HttpClient, ServiceError, candles_payload
from devtools import REPO_ROOT, free_port
from features import (
    FEATURE_NAMES,
    OHLCV_COLUMNS,
    WARMUP_BARS,
    compute_features,
    compute_window_features,
)
from policy import POSITION_NAMES
from tests.servers import server_env

pytestmark = pytest.mark.integration

N_BARS = 300


@pytest.fixture(scope="module")
def http(http_url):
    with HttpClient(http_url) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_client(grpc_server):
    with GrpcClient(grpc_server[0]) as client:
        yield client


def offline_probability(offline, frame: pd.DataFrame) -> float:
    features = compute_window_features(frame[list(OHLCV_COLUMNS)].to_numpy()[np.newaxis])
    return float(offline.model.predict_proba(features)[0])


def iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


# ---------------------------------------------------------------- start-up, health, docs


@pytest.mark.parametrize(
    ("tag", "empty_store", "reason"),
    [
        ("btcusdt_mlp:doesnotexist", False, "'btcusdt_mlp:doesnotexist' is not in the"),
        ("", True, "no 'btcusdt_mlp' model in the BentoML model store"),
    ],
)
def test_start_up_stops_with_the_reason_when_no_model_can_be_served(
    tmp_path, tag, empty_store, reason
):
    home = str(tmp_path) if empty_store else os.environ["BENTOML_HOME"]
    started = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", "service:svc", "--port", str(free_port())],
        cwd=REPO_ROOT,
        env=server_env(home, tag),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode != 0
    assert "ModelContractError" in started.stderr
    assert reason in started.stderr


def test_health_endpoints_and_openapi_document(http_url):
    assert httpx.get(f"{http_url}/livez").status_code == 200
    assert httpx.get(f"{http_url}/readyz").status_code == 200
    doc = httpx.get(f"{http_url}/docs.json").json()
    assert doc["openapi"].startswith("3.0")
    assert {"/predict", "/indicators", "/model_info"} <= set(doc["paths"])
    candle = doc["components"]["schemas"]["Candle"]
    assert set(candle["required"]) == {"timestamp", "open", "high", "low", "close", "volume"}
    assert all(candle["properties"][f].get("description") for f in candle["required"])
    assert "exclusiveMinimum" not in json.dumps(doc)  # not valid OpenAPI 3.0


def test_model_info_describes_the_served_model(http, grpc_client, offline, trained_model_tag):
    info = http.model_info()
    assert info["model_tag"] == trained_model_tag
    assert info["stage"] == "candidate"
    assert info["feature_names"] == list(FEATURE_NAMES)
    assert info["warmup_bars"] == WARMUP_BARS
    assert info["train_range"] == offline.metadata["train_range"]
    assert info["holdout_range"] == offline.metadata["holdout_range"]
    assert info["metrics"]["holdout"]["model"]["roc_auc"] > 0
    assert grpc_client.model_info()["model_tag"] == trained_model_tag


# ---------------------------------------------------------------- predictions and parity


def test_predict_is_the_same_over_http_grpc_and_offline(
    http, grpc_client, offline, window, trained_model_tag
):
    expected = offline_probability(offline, window)
    over_http = http.predict(window)
    over_grpc = grpc_client.predict(window)
    for answer in (over_http, over_grpc):
        assert answer["probability_up"] == pytest.approx(expected, abs=1e-6)
        assert answer["model_tag"] == trained_model_tag
        assert answer["timestamp"] == iso(window["timestamp"].iloc[-1])
        assert answer["horizon_bars"] == offline.label_horizon
        # No position in the request: flat, and the signal is the stored policy's target.
        assert answer["signal"] == POSITION_NAMES[offline.policy.next_position(expected, "flat")]
    assert over_grpc["probability_up"] == pytest.approx(over_http["probability_up"], abs=1e-6)


def test_batch_predict_answers_each_window_in_order(http, grpc_client, offline, btc_slice):
    windows = [
        btc_slice.iloc[start : start + n].reset_index(drop=True)
        for start, n in ((0, WARMUP_BARS + 1), (700, 500), (1500, N_BARS), (2100, 2048 // 4))
    ]
    expected = [offline_probability(offline, w) for w in windows]
    for client in (http, grpc_client):
        answers = client.predict_batch(windows)
        assert [a["timestamp"] for a in answers] == [iso(w["timestamp"].iloc[-1]) for w in windows]
        got = [a["probability_up"] for a in answers]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_epoch_millisecond_timestamps_give_the_same_answer(http, window):
    candles = candles_payload(window)
    for candle, ts in zip(candles, window["timestamp"], strict=True):
        candle["timestamp"] = int(ts.value // 1_000_000)
    assert http.predict(candles) == http.predict(window)


def test_indicators_equal_the_training_features(http, grpc_client, window, trained_model_tag):
    expected = compute_features(window).iloc[-1]
    for client in (http, grpc_client):
        answer = client.indicators(window)
        assert list(answer["values"]) == list(FEATURE_NAMES)
        np.testing.assert_allclose(
            list(answer["values"].values()), expected.to_numpy(), rtol=1e-9, atol=1e-12
        )
        assert answer["timestamp"] == iso(window["timestamp"].iloc[-1])
        assert answer["model_tag"] == trained_model_tag
        assert "rows" not in answer


def test_indicators_all_rows_are_every_warmed_up_row(http, window):
    expected = compute_features(window)
    answer = http.indicators(window, all_rows=True)
    assert len(answer["rows"]) == len(window) - WARMUP_BARS == len(expected)
    assert [r["timestamp"] for r in answer["rows"]] == [iso(t) for t in expected.index]
    got = np.array([list(r["values"].values()) for r in answer["rows"]])
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-9, atol=1e-12)
    assert answer["values"] == answer["rows"][-1]["values"]


def test_outage_windows_are_answered_with_finite_values(http, grpc_client, offline, outage_windows):
    """Flat, zero-volume tails at 40 price levels: 80 of 80 calls (``predict`` and
    ``indicators``) answered, with the offline model's P(up) and finite features."""
    answered = 0
    for window in outage_windows:
        prediction = http.predict(window)
        assert prediction["probability_up"] == pytest.approx(
            offline_probability(offline, window), rel=1e-6
        )
        answered += 1
        values = http.indicators(window)["values"]
        assert all(math.isfinite(v) for v in values.values()), values
        assert values["cci_20"] == 0.0
        answered += 1
    assert answered == 80 == 2 * len(outage_windows)
    batch = grpc_client.predict_batch(outage_windows)  # one request, merged in the runner
    assert [p["probability_up"] for p in batch] == pytest.approx(
        [offline_probability(offline, w) for w in outage_windows], rel=1e-6
    )


def test_a_feature_that_cannot_be_computed_is_named_in_the_refusal(http, grpc_client, window):
    """Valid candles whose volumes overflow float64 in OBV's sums: the 400 / INVALID_ARGUMENT
    names that feature (not the first column of the row)."""
    overflowing = window.assign(volume=1e308)
    calls = [call for client in (http, grpc_client) for call in (client.predict, client.indicators)]
    calls.append(lambda candles: http.indicators(candles, all_rows=True))
    for call in calls:
        with pytest.raises(ServiceError) as refused:
            call(overflowing)
        assert refused.value.status in (400, "INVALID_ARGUMENT")
        assert refused.value.error.startswith("candles: feature obv_flow_24 is not finite")
    with pytest.raises(ServiceError) as refused:
        http.predict_batch([window, overflowing])
    assert refused.value.error.startswith("windows[1].candles: feature obv_flow_24 is not finite")


# ---------------------------------------------------------------- invalid input


def _candles(window: pd.DataFrame) -> list[dict]:
    return candles_payload(window)


def _with(window: pd.DataFrame, row: int, **changes) -> dict:
    candles = _candles(window)
    candles[row].update(changes)
    return {"candles": candles}


def _bad_inputs(window: pd.DataFrame, long_window: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    """name -> (request body, text the error message must contain)."""
    candles = _candles(window)
    swapped = candles.copy()
    swapped[5], swapped[6] = swapped[6], swapped[5]
    duplicated = candles.copy()
    duplicated[6] = duplicated[5]
    dump = lambda payload: json.dumps(payload).encode()  # noqa: E731
    nan_body = dump(_with(window, 3, open=1.0)).replace(b'"open": 1.0', b'"open": NaN', 1)
    inf_body = dump(_with(window, 3, volume=1.0)).replace(
        b'"volume": 1.0', b'"volume": Infinity', 1
    )
    return {
        "not_json": (b"candles please", "not valid JSON"),
        "not_utf8": (b'{"candles": "\xff\xfe"}', "not UTF-8"),
        "not_an_object": (b"[1, 2, 3]", "body"),
        "missing_field": (dump({"candle": candles}), "candles: Field required"),
        "missing_column": (
            dump({"candles": [{k: v for k, v in c.items() if k != "volume"} for c in candles]}),
            "candles row 0: volume: Field required",
        ),
        "wrong_type": (dump(_with(window, 3, close="high")), "candles row 3: close"),
        "nan": (nan_body, "candles row 3: open: Input should be a finite number"),
        "infinity": (inf_body, "candles row 3: volume: Input should be a finite number"),
        "non_positive_price": (dump(_with(window, 4, low=0.0)), "candles row 4: low must be > 0"),
        "negative_volume": (dump(_with(window, 4, volume=-1.0)), "volume must be >= 0"),
        "high_below_low": (dump(_with(window, 7, high=1.0)), "candles row 7: high (1.0) must be"),
        "unsorted": (dump({"candles": swapped}), "out of order"),
        "duplicate": (dump({"candles": duplicated}), "duplicate timestamp"),
        "gap": (dump({"candles": candles[:10] + candles[11:]}), "candles row 10: gap"),
        "naive_timestamp": (
            dump(_with(window, 2, timestamp="2021-11-10T14:00:00")),
            "candles row 2: timestamp '2021-11-10T14:00:00' has no UTC offset",
        ),
        "bad_timestamp": (dump(_with(window, 2, timestamp="yesterday")), "not ISO 8601"),
        "too_few": (dump({"candles": candles[:WARMUP_BARS]}), "at least 241 candles"),
        "too_many": (dump({"candles": _candles(long_window)}), "at most 2048 candles"),
        "too_many_windows": (
            dump({"windows": [{"candles": candles[: WARMUP_BARS + 1]}] * 65}),
            "windows: at most 64 windows",
        ),
        "bad_window_in_batch": (
            dump({"windows": [{"candles": candles}, _with(window, 7, high=1.0)]}),
            "windows[1].candles row 7: high",
        ),
        "both_forms": (dump({"candles": candles, "windows": []}), "either candles or windows"),
    }


@pytest.fixture(scope="module")
def bad_inputs(window, btc_slice):
    return _bad_inputs(window, btc_slice.iloc[:2049].reset_index(drop=True))


BAD_INPUT_NAMES = [
    "not_json", "not_utf8", "not_an_object", "missing_field", "missing_column", "wrong_type",
    "nan", "infinity", "non_positive_price", "negative_volume", "high_below_low", "unsorted",
    "duplicate", "gap", "naive_timestamp", "bad_timestamp", "too_few", "too_many",
    "too_many_windows", "bad_window_in_batch", "both_forms",
]  # fmt: skip


def test_bad_input_battery_is_complete(bad_inputs):
    assert sorted(bad_inputs) == sorted(BAD_INPUT_NAMES)


@pytest.mark.parametrize("name", BAD_INPUT_NAMES)
def test_http_rejects_bad_input_with_400_and_the_contract_body(http_url, bad_inputs, name):
    body, message = bad_inputs[name]
    response = httpx.post(
        f"{http_url}/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


@pytest.mark.parametrize("name", BAD_INPUT_NAMES)
def test_grpc_rejects_bad_input_with_invalid_argument(grpc_client, bad_inputs, name):
    body, message = bad_inputs[name]
    with pytest.raises(ServiceError) as rejected:
        grpc_client.call("predict", body)
    assert rejected.value.status == "INVALID_ARGUMENT"
    assert message in rejected.value.error


def test_oversized_body_is_413_and_the_server_keeps_answering(http_url, http, window):
    too_big = b" " * (16 * 1024 * 1024 + 1)
    response = httpx.post(f"{http_url}/predict", content=too_big)
    assert response.status_code == 413
    assert "larger than the limit" in response.json()["error"]
    assert httpx.post(f"{http_url}/indicators", content=b"\xff").status_code == 400
    assert 0.0 <= http.predict(window)["probability_up"] <= 1.0


def test_request_id_is_taken_from_the_caller_and_echoed(http_url, grpc_server, window):
    body = json.dumps({"candles": candles_payload(window)})
    headers = {"X-Request-ID": "abc-123", "Content-Type": "application/json"}
    response = httpx.post(f"{http_url}/predict", content=body, headers=headers)
    assert response.headers["x-request-id"] == "abc-123"
    rejected = httpx.post(f"{http_url}/predict", content=b"{}", headers=headers)
    assert rejected.status_code == 400 and rejected.headers["x-request-id"] == "abc-123"
    with grpc.insecure_channel(grpc_server[0]) as channel:
        stub = service_pb2_grpc.BentoServiceStub(channel)
        request = service_pb2.Request(api_name="model_info", serialized_bytes=b"{}")
        _, call = stub.Call.with_call(request, metadata=(("x-request-id", "grpc-7"),))
    assert ("x-request-id", "grpc-7") in tuple(call.trailing_metadata())


# ---------------------------------------------------------------- metrics and batching


def test_metrics_are_exposed_and_move_with_calls(
    http_url, http, grpc_client, grpc_server, window, trained_model_tag
):
    before = httpx.get(f"{http_url}/metrics").text
    answers = [http.predict(window) for _ in range(3)]
    with pytest.raises(ServiceError):
        http.predict(window.iloc[:10])
    after = httpx.get(f"{http_url}/metrics").text
    tag = {"model_tag": trained_model_tag}

    def moved(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    signal = answers[0]["signal"]
    assert moved("btcusdt_predictions_total", signal=signal, **tag) == 3
    assert moved("btcusdt_probability_up_count", **tag) == 3
    assert moved("btcusdt_request_rejections_total", reason="too_few_candles") == 1
    assert moved("btcusdt_feature_computation_seconds_count", method="predict_windows") >= 1
    stage = {"stage": "candidate", "feature_set_version": "1"}
    assert metric_value(after, "btcusdt_model_info", **tag, **stage) == 1

    grpc_before = httpx.get(grpc_server[1]).text
    grpc_client.predict(window)
    grpc_after = httpx.get(grpc_server[1]).text
    grpc_moved = metric_value(grpc_after, "btcusdt_probability_up_count", **tag) - metric_value(
        grpc_before, "btcusdt_probability_up_count", **tag
    )
    assert grpc_moved == 1


def _assert_batched(before: str, after: str, runner: str, method: str, n_requests: int) -> None:
    """Every request reached ``runner.method``, in fewer calls, some merging several windows."""
    labels = {"runner_name": runner, "method_name": method}

    def moved(name: str, **more: str) -> float:
        return metric_value(after, name, **labels, **more) - metric_value(
            before, name, **labels, **more
        )

    calls = moved("bentoml_runner_adaptive_batch_size_count")
    windows_seen = moved("bentoml_runner_adaptive_batch_size_sum")
    batches_of_one = moved("bentoml_runner_adaptive_batch_size_bucket", le="1.0")
    assert windows_seen == n_requests, runner
    assert calls < n_requests, f"{runner}: {calls} calls for {n_requests} requests"
    assert batches_of_one < calls, f"{runner}: no batch larger than one"
    assert math.isfinite(calls)


@pytest.mark.parametrize("api", ["predict", "indicators"])
def test_concurrent_requests_are_batched_by_the_runners(http_url, http, offline, btc_slice, api):
    """predict: one call of the direction runner per batch (features + model); indicators: the
    features runner. Batched answers equal the offline, one-window-at-a-time ones."""
    windows = [btc_slice.iloc[i * 40 : i * 40 + N_BARS] for i in range(32)]
    call = getattr(http, api)
    with ThreadPoolExecutor(max_workers=len(windows)) as pool:
        list(pool.map(call, windows[:16]))  # BentoML's batching warms up on the first calls
        before = httpx.get(f"{http_url}/metrics").text
        answers = list(pool.map(call, windows))
    after = httpx.get(f"{http_url}/metrics").text

    if api == "predict":
        expected = [offline_probability(offline, w.reset_index(drop=True)) for w in windows]
        np.testing.assert_allclose([a["probability_up"] for a in answers], expected, atol=1e-6)
        _assert_batched(before, after, "direction", "predict_windows", len(windows))
    else:
        for w, answer in zip(windows, answers, strict=True):
            single = compute_features(w.reset_index(drop=True)).iloc[-1]  # ta, one window
            got = pd.Series(answer["values"])[single.index]
            np.testing.assert_allclose(got, single, rtol=1e-9, atol=1e-12)
        _assert_batched(before, after, "features", "last_row", len(windows))


# ---------------------------------------------------------------- a standard BentoML gRPC client
# Built only from BentoML's shipped ``bentoml.grpc.v1`` stubs and protobuf's own JSON helpers (no
# project code): the request's input in ``Request.json``, BentoML's documented field for a JSON
# API, where every number travels as a double.


def _standard_call(address: str, api: str, payload) -> tuple[str, dict]:
    """``(content field of the answer, answer)`` of one call with ``Request.json``."""
    from google.protobuf import struct_pb2
    from google.protobuf.json_format import MessageToDict, ParseDict

    request = service_pb2.Request(api_name=api, json=ParseDict(payload, struct_pb2.Value()))
    with grpc.insecure_channel(address) as channel:
        response = service_pb2_grpc.BentoServiceStub(channel).Call(request, timeout=60)
    field = response.WhichOneof("content")
    return field, MessageToDict(getattr(response, field))


def _standard_refusal(address: str, api: str, payload) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as refused:
        _standard_call(address, api, payload)
    return refused.value.code(), json.loads(refused.value.details())["error"]


def _epoch_ms_candles(window: pd.DataFrame) -> list[dict]:
    candles = _candles(window)
    for candle, ts in zip(candles, window["timestamp"], strict=True):
        candle["timestamp"] = int(ts.value // 1_000_000)
    return candles


@pytest.mark.parametrize("timestamps", ["iso", "epoch_ms"])
def test_standard_grpc_client_gets_http_answers_through_the_json_field(
    http, grpc_server, window, btc_slice, trained_model_tag, timestamps
):
    address = grpc_server[0]
    candles = _candles(window) if timestamps == "iso" else _epoch_ms_candles(window)

    field, answer = _standard_call(address, "predict", {"candles": candles})
    expected = http.predict(window)
    assert field == "json"
    assert answer["model_tag"] == trained_model_tag
    assert answer["signal"] == expected["signal"] and answer["timestamp"] == expected["timestamp"]
    assert answer["probability_up"] == pytest.approx(expected["probability_up"], abs=1e-6)
    assert answer["horizon_bars"] == expected["horizon_bars"]

    windows = [btc_slice.iloc[i * 50 : i * 50 + N_BARS].reset_index(drop=True) for i in range(3)]
    batch = [{"candles": _candles(w)} for w in windows]
    field, answer = _standard_call(address, "predict", {"windows": batch})
    assert field == "json"
    over_http = http.predict_batch(windows)
    np.testing.assert_allclose(
        [p["probability_up"] for p in answer["predictions"]],
        [p["probability_up"] for p in over_http],
        atol=1e-6,
    )

    field, answer = _standard_call(address, "indicators", {"candles": candles})
    expected_values = http.indicators(window)["values"]
    assert field == "json" and set(answer["values"]) == set(expected_values)
    for name, value in expected_values.items():
        assert answer["values"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name

    field, answer = _standard_call(address, "model_info", {})
    assert field == "json" and answer["model_tag"] == trained_model_tag


def test_standard_grpc_client_epoch_ms_doubles_parse_as_integers(grpc_server, window):
    """1654300800000.0 is the integer 1654300800000; 1654300800000.5 is refused, by row."""
    address = grpc_server[0]
    candles = _epoch_ms_candles(window)
    as_doubles = [{**c, "timestamp": float(c["timestamp"])} for c in candles]
    _, from_doubles = _standard_call(address, "predict", {"candles": as_doubles})
    _, from_ints = _standard_call(address, "predict", {"candles": candles})
    assert from_doubles == from_ints

    fractional = [dict(c) for c in as_doubles]
    fractional[5]["timestamp"] += 0.5
    code, error = _standard_refusal(address, "predict", {"candles": fractional})
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.startswith("candles row 5: timestamp: must be") and "integer epoch" in error


# Every input of the battery that a protobuf Value can carry (not_json and not_utf8 are bytes).
JSON_FIELD_BAD_INPUTS = [n for n in BAD_INPUT_NAMES if n not in ("not_json", "not_utf8")]


@pytest.mark.parametrize("name", JSON_FIELD_BAD_INPUTS)
def test_standard_grpc_client_bad_input_in_json_field_is_invalid_argument(
    grpc_server, bad_inputs, name
):
    body, message = bad_inputs[name]
    code, error = _standard_refusal(grpc_server[0], "predict", json.loads(body))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error


# ---------------------------------------------------------------- status codes operators see


def _requests_total(text: str, **labels: str) -> float:
    return metric_value(text, "bentoml_api_server_request_total", **labels)


def test_grpc_refusals_are_counted_and_logged_as_invalid_argument(grpc_server, window):
    address, metrics_url, log = grpc_server
    before = httpx.get(metrics_url).text
    short = {"candles": _candles(window.iloc[:10])}
    for _ in range(5):
        code, _ = _standard_refusal(address, "predict", short)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    _standard_call(address, "predict", {"candles": _candles(window)})
    after = httpx.get(metrics_url).text

    def moved(code: str) -> float:
        labels = {"api_name": "predict", "http_response_code": code}
        return _requests_total(after, **labels) - _requests_total(before, **labels)

    assert moved("400") == 5
    assert moved("200") == 1
    assert moved("500") == 0
    access = [line for line in log.read_text().splitlines() if "BentoService/Call" in line]
    assert sum("http_status=400,grpc_status=3," in line for line in access) >= 5
    assert not any("grpc_status=13" in line for line in access)


def test_http_refusals_are_counted_and_logged_under_their_4xx(http_server, http, window):
    url, log = http_server
    before = httpx.get(f"{url}/metrics").text
    for _ in range(3):
        assert httpx.post(f"{url}/predict", json={"candles": _candles(window.iloc[:10])}).is_error
    assert httpx.post(f"{url}/predict", content=b"\xff").status_code == 400
    http.predict(window)
    after = httpx.get(f"{url}/metrics").text

    def moved(code: str) -> float:
        labels = {"endpoint": "/predict", "http_response_code": code}
        return _requests_total(after, **labels) - _requests_total(before, **labels)

    assert moved("400") == 4
    assert moved("200") == 1
    assert moved("500") == 0
    access = [line for line in log.read_text().splitlines() if "path=/predict," in line]
    assert sum("(status=400," in line for line in access) >= 4


# ---------------------------------------------------------------- model age and expiry


def test_model_info_and_gauges_report_the_served_models_age_and_expiry(
    http, grpc_client, http_url, offline, trained_model_tag
):
    trained = pd.Timestamp(offline.metadata["trained_at"])
    expires = pd.Timestamp(offline.metadata["expires_at"])
    lifetime = offline.metadata["train_config"]["lifetime_hours"]
    assert expires - trained == pd.Timedelta(hours=lifetime)
    for answer in (http.model_info(), grpc_client.model_info()):
        expiry = answer["expiry"]
        assert pd.Timestamp(expiry["trained_at"]) == trained
        assert pd.Timestamp(expiry["expires_at"]) == expires
        age = pd.Timestamp.now(tz="UTC") - trained
        assert abs(expiry["age_hours"] - age / pd.Timedelta(hours=1)) < 0.1
        assert expiry["expired"] is False and expiry["status"].startswith("expires in ")
    metrics = httpx.get(f"{http_url}/metrics").text
    tag = {"model_tag": trained_model_tag}
    assert metric_value(metrics, "btcusdt_model_trained_timestamp_seconds", **tag) == pytest.approx(
        trained.timestamp()
    )
    assert metric_value(metrics, "btcusdt_model_expiry_timestamp_seconds", **tag) == pytest.approx(
        expires.timestamp()
    )


# ---------------------------------------------------------------- the live example


def test_live_example_predicts_on_the_newest_closed_candles_of_the_exchange_and_dataset(
    http, grpc_server, http_url, btc_frame, tmp_path
):
    """examples/live_predict.py against the fake Binance (recorded candles, the newest one
    still forming by the exchange's clock) and against a dataset written by data update."""
    from ingest import UpdateRequest, update_dataset
    from tests.fake_binance import FakeBinance, recorded_klines

    start = btc_frame.index[btc_frame["timestamp"] == pd.Timestamp("2022-04-01", tz="UTC")][0]
    recorded = btc_frame.iloc[start : start + 600].reset_index(drop=True)
    klines = recorded_klines(recorded)
    closed = recorded.iloc[:-1]  # the last hour is 20 minutes old on the exchange's clock
    window = closed.iloc[-(WARMUP_BARS + 1) :].reset_index(drop=True)
    expected = http.predict(window)
    script = [sys.executable, str(REPO_ROOT / "examples" / "live_predict.py")]
    with FakeBinance(klines, now_ms=klines[-1][0] + 20 * 60 * 1000).running() as fake:
        over_http = subprocess.run(
            [*script, "--exchange", fake.url, "--service-url", http_url],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        dataset = tmp_path / "BTCUSDT-1h.parquet"
        since = recorded["timestamp"].iloc[0]
        update_dataset(UpdateRequest(out=dataset, since=since, base_url=fake.url))
    over_grpc = subprocess.run(
        [*script, "--dataset", str(dataset), "--grpc", grpc_server[0]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    for run in (over_http, over_grpc):
        assert run.returncode == 0, run.stderr
        answer = json.loads(run.stdout)
        assert answer["timestamp"] == closed["timestamp"].iloc[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
        assert answer["probability_up"] == pytest.approx(expected["probability_up"], abs=1e-6)
        assert answer["signal"] == expected["signal"]
        assert answer["expiry"].startswith("expires in ")


def test_column_form_is_answered_as_the_row_form_over_http_and_grpc(
    http_url, http, grpc_server, window
):
    rows = _candles(window)
    columns = {name: [c[name] for c in rows] for name in rows[0]}
    expected = http.predict(window)
    over_http = httpx.post(f"{http_url}/predict", json={"candles": columns}).json()
    _, over_grpc = _standard_call(grpc_server[0], "predict", {"candles": columns})
    for answer in (over_http, over_grpc):
        assert answer["probability_up"] == pytest.approx(expected["probability_up"], abs=1e-6)
        assert answer["timestamp"] == expected["timestamp"]
    batch = {"windows": [{"candles": columns}, {"candles": rows}]}
    both = httpx.post(f"{http_url}/predict", json=batch).json()["predictions"]
    assert both[0] == both[1] == over_http
    indicators = httpx.post(f"{http_url}/indicators", json={"candles": columns}).json()
    assert indicators == http.indicators(window)
