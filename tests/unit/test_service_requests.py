"""The service's request handling without a server: parsing, limits, messages, error bodies,
and the feature runner's isolation of a bad window (real BTCUSDT candles)."""

from __future__ import annotations

import functools
import json

import bentoml
import numpy as np
import pandas as pd
import pytest

from client import candles_payload
from features import (
    FEATURE_NAMES,
    OHLCV_COLUMNS,
    WARMUP_BARS,
    CandleValidationError,
    compute_window_features,
)
from serving.errors import InvalidRequest
from serving.io import ValidatedJSON
from serving.middleware import contract_error_body
from serving.runners import _window_features
from serving.schemas import (
    EPOCH_MS_MAX,
    IndicatorsRequest,
    PredictBatch,
    PredictRequest,
    PredictWindow,
)
from serving.windows import (
    WindowDecoder,
    format_epoch_us,
    parse_indicators,
    parse_predict,
    request_windows,
)

LIMITS = {"min_candles": WARMUP_BARS + 1, "max_candles": 2048, "max_windows": 64}


FAST_PREDICT = WindowDecoder(
    PredictWindow,
    batch=PredictBatch,
    max_candles=LIMITS["max_candles"],
    max_windows=LIMITS["max_windows"],
)


def decode(body: bytes):
    """``predict``'s input as the service builds it: the typed decoder first."""
    parse = functools.partial(
        parse_predict, max_candles=LIMITS["max_candles"], max_windows=LIMITS["max_windows"]
    )
    descriptor = ValidatedJSON(pydantic_model=PredictRequest, parse=parse, fast_decode=FAST_PREDICT)
    return descriptor.decode(body)


def general_decode(body: bytes):
    """The same without the typed decoder: parse to Python objects, then check them."""
    parse = functools.partial(
        parse_predict, max_candles=LIMITS["max_candles"], max_windows=LIMITS["max_windows"]
    )
    return ValidatedJSON(pydantic_model=PredictRequest, parse=parse).decode(body)


def rejection(body: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as rejected:
        request_windows(decode(body), **LIMITS)
    return rejected.value


def test_a_valid_window_becomes_the_validated_candle_frame(window):
    body = json.dumps({"candles": candles_payload(window)}).encode()
    (parsed,) = request_windows(decode(body), **LIMITS)
    pd.testing.assert_frame_equal(parsed.frame, window)
    np.testing.assert_array_equal(parsed.ohlcv, window[list(OHLCV_COLUMNS)].to_numpy())
    assert format_epoch_us(parsed.last_timestamp_us) == "2021-10-13T11:00:00Z"


def test_epoch_ms_and_offset_timestamps_mean_the_same_instant(window):
    candles = candles_payload(window)
    as_ms = [
        {**c, "timestamp": int(t.value // 1_000_000)}
        for c, t in zip(candles, window.timestamp, strict=True)
    ]
    as_offset = [
        {**c, "timestamp": t.tz_convert("Asia/Tokyo").isoformat()}
        for c, t in zip(candles, window.timestamp, strict=True)
    ]
    frames = [
        request_windows(decode(json.dumps({"candles": c}).encode()), **LIMITS)[0].frame
        for c in (candles, as_ms, as_offset)
    ]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])


def test_error_names_the_window_row_and_rule(window):
    good = candles_payload(window)
    bad = candles_payload(window)
    bad[12]["low"] = bad[12]["high"] * 2
    body = json.dumps({"windows": [{"candles": good}, {"candles": bad}]}).encode()
    error = rejection(body)
    assert error.error.startswith("windows[1].candles row 12: high (")
    assert error.reason == "invalid_candles"
    assert json.loads(error.message) == {"error": error.error}  # the gRPC details / HTTP body


def test_pydantic_errors_read_as_field_and_rule(window):
    candles = candles_payload(window)
    candles[3]["close"] = None
    error = rejection(json.dumps({"candles": candles}).encode())
    assert error.error.startswith("candles row 3: close: Input should be a valid number")
    assert error.reason == "invalid_schema"


def test_mixed_timestamp_kinds_in_one_window_are_refused(window):
    candles = candles_payload(window)
    candles[5]["timestamp"] = int(window.timestamp[5].value // 1_000_000)
    error = rejection(json.dumps({"candles": candles}).encode())
    assert error.error.startswith("candles row 5: timestamp: all timestamps of a window")


def test_non_utf8_and_non_json_bodies_are_client_errors():
    with pytest.raises(InvalidRequest, match="not UTF-8"):
        decode(b'{"candles": "\xc3\x28"}')
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        decode(b'{"candles": [')
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        decode(b"[" * 100_000)


def test_bentoml_error_answers_become_the_contract_body():
    bentoml_400 = json.dumps(
        "BentoService error handling API request: " + json.dumps({"error": "candles: bad"})
    ).encode()
    assert json.loads(contract_error_body(400, bentoml_400)) == {"error": "candles: bad"}
    assert json.loads(contract_error_body(405, b"Method Not Allowed")) == {
        "error": "Method Not Allowed"
    }
    assert "not loaded" in json.loads(contract_error_body(503, b'""'))["error"]
    assert set(json.loads(contract_error_body(500, b"boom"))) == {"error"}


def test_feature_runner_keeps_good_windows_and_the_failing_feature_of_a_degenerate_one(
    btc_slice,
):
    real = [btc_slice.iloc[i : i + 300][list(OHLCV_COLUMNS)].to_numpy() for i in (0, 50)]
    flat = np.tile([100.0, 100.0, 100.0, 100.0, 1.0], (300, 1))  # a price that never moves
    shorter = btc_slice.iloc[100 : 400 - 50][list(OHLCV_COLUMNS)].to_numpy()
    overflowing = real[1].copy()
    overflowing[:, OHLCV_COLUMNS.index("volume")] = 1e308  # valid candles; sums overflow
    got = _window_features([real[0], overflowing, real[1], shorter, flat])
    bad = [FEATURE_NAMES[i] for i in np.flatnonzero(~np.isfinite(got[1]))]
    assert bad == ["obv_flow_24"]  # only the feature that failed, not the whole row
    np.testing.assert_array_equal(
        got[1], compute_window_features(overflowing[None], check_finite=False)[0]
    )
    for row, window in ((0, real[0]), (2, real[1]), (3, shorter), (4, flat)):
        np.testing.assert_array_equal(got[row], compute_window_features(window[None])[0])
    with pytest.raises(CandleValidationError, match="feature obv_flow_24 is not finite"):
        compute_window_features(overflowing[None])


def test_runner_sessions_ignore_proxy_variables_and_netrc(monkeypatch, tmp_path):
    """BentoML opens its runner sessions with aiohttp's trust_env=True and OpenTelemetry's
    hooks; the service turns the first off (serving.guard.runner_sessions_ignore_environment),
    so a proxy variable or ~/.netrc never applies to runner traffic and is not looked up on
    every call, and drops the hooks while tracing keeps no trace."""
    import asyncio
    from types import SimpleNamespace

    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.runner.runner_handle.remote import RemoteRunnerClient

    from serving.guard import runner_sessions_ignore_environment

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    mapping = BentoMLContainer.remote_runner_mapping.get()
    BentoMLContainer.remote_runner_mapping.set({"direction": "tcp://127.0.0.1:9"})

    async def session_settings() -> tuple[bool, int]:
        """``trust_env`` and the number of trace hooks of a runner client's session."""
        client = RemoteRunnerClient(SimpleNamespace(name="direction"))  # type: ignore[arg-type]
        session = client._client  # what every runner call uses
        try:
            return session.trust_env, len(session._trace_configs)
        finally:
            await client._reset_client()

    patched_before = getattr(RemoteRunnerClient._client.fget, "_ignores_environment", False)
    if not patched_before:  # BentoML's own set-up, which the patch exists for
        assert asyncio.run(session_settings()) == (True, 1)
    assert runner_sessions_ignore_environment() is True
    assert runner_sessions_ignore_environment() is True  # idempotent
    # Default configuration: tracing keeps no trace, so no span per runner call either.
    assert BentoMLContainer.config.tracing.sample_rate.get() is None
    assert asyncio.run(session_settings()) == (False, 0)
    BentoMLContainer.config.tracing.sample_rate.set(1.0)  # tracing on: spans stay
    try:
        assert asyncio.run(session_settings()) == (False, 1)
    finally:
        BentoMLContainer.config.tracing.sample_rate.set(None)
        BentoMLContainer.remote_runner_mapping.set(mapping)


def test_unsampled_tracing_adds_no_middleware_and_sampled_tracing_keeps_it():
    """BentoML wraps its API and runner apps in OpenTelemetry's ASGI middleware, and its gRPC
    server in OpenTelemetry's interceptor, even when its sampler drops every span;
    serving.tracing.skip_unsampled_tracing leaves them out then, and only then: with
    tracing.sample_rate > 0 all three are built as BentoML builds them."""
    import types
    import warnings

    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.server.grpc_app import Server as GrpcServer
    from bentoml._internal.server.http_app import HTTPAppFactory
    from bentoml._internal.server.runner_app import RunnerAppFactory

    from serving.runners import FeatureRunnable
    from serving.tracing import skip_unsampled_tracing

    runner = bentoml.legacy.Runner(FeatureRunnable, name="features")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        service = bentoml.legacy.Service("tracing_probe", runners=[runner])
    grpc_server = types.SimpleNamespace(bento_service=service)  # what `interceptors` reads

    def traced() -> tuple[bool, bool, bool]:
        apps = (HTTPAppFactory(service), RunnerAppFactory(runner))
        asgi = ["OpenTelemetryMiddleware" in [m.cls.__name__ for m in a.middlewares] for a in apps]
        interceptors = GrpcServer.interceptors.fget(grpc_server)  # type: ignore[attr-defined]
        grpc = "AsyncOpenTelemetryServerInterceptor" in [i.__name__ for i in interceptors]
        return (*asgi, grpc)  # type: ignore[return-value]

    patched_before = getattr(HTTPAppFactory.middlewares.fget, "_skips_unsampled_tracing", False)
    if not patched_before:  # BentoML's own set-up, which the patch exists for
        assert traced() == (True, True, True)
    assert skip_unsampled_tracing() is True
    assert skip_unsampled_tracing() is True  # idempotent
    assert BentoMLContainer.config.tracing.sample_rate.get() is None
    assert traced() == (False, False, False)
    BentoMLContainer.config.tracing.sample_rate.set(0.25)  # tracing on: the middleware stays
    try:
        assert traced() == (True, True, True)
    finally:
        BentoMLContainer.config.tracing.sample_rate.set(None)
    names = [m.cls.__name__ for m in HTTPAppFactory(service).middlewares]
    assert "HTTPTrafficMetricsMiddleware" in names  # the metrics stay, whatever tracing says


# ---------------------------------------------------------------- the column form of a window


def _columns(candles: list[dict]) -> dict[str, list]:
    return {name: [c[name] for c in candles] for name in candles[0]}


def test_column_form_gives_the_same_window_as_the_row_form(window):
    rows = candles_payload(window)
    (from_rows,) = request_windows(decode(json.dumps({"candles": rows}).encode()), **LIMITS)
    columns = json.dumps({"candles": _columns(rows)}).encode()
    (from_columns,) = request_windows(decode(columns), **LIMITS)
    np.testing.assert_array_equal(from_columns.ohlcv, from_rows.ohlcv)
    np.testing.assert_array_equal(from_columns.timestamps_us, from_rows.timestamps_us)
    pd.testing.assert_frame_equal(from_columns.frame, window)
    as_frame = window.assign(timestamp=window["timestamp"].map(lambda t: t.isoformat()))
    direct = json.dumps({"candles": as_frame.to_dict("list")}).encode()  # what pandas users send
    np.testing.assert_array_equal(
        request_windows(decode(direct), **LIMITS)[0].ohlcv, window[list(OHLCV_COLUMNS)].to_numpy()
    )


def _broken(window: pd.DataFrame, name: str) -> list[dict]:
    """One mistake of the battery, in row form."""
    candles = candles_payload(window)
    if name == "wrong_type":
        candles[3]["close"] = "high"
    elif name == "null":
        candles[3]["open"] = None
    elif name == "non_positive":
        candles[4]["low"] = 0.0
    elif name == "negative_volume":
        candles[4]["volume"] = -1.0
    elif name == "high_below_low":
        candles[7]["high"] = 1.0
    elif name == "unsorted":
        candles[5], candles[6] = candles[6], candles[5]
    elif name == "duplicate":
        candles[6] = candles[5]
    elif name == "gap":
        del candles[10]
    elif name == "naive_timestamp":
        candles[2]["timestamp"] = "2021-11-10T14:00:00"
    elif name == "bad_timestamp":
        candles[2]["timestamp"] = "yesterday"
    elif name == "mixed_timestamps":
        candles[5]["timestamp"] = 1_600_000_000_000
    elif name == "too_few":
        candles = candles[:WARMUP_BARS]
    return candles


COLUMN_FORM_MISTAKES = [
    "wrong_type", "null", "non_positive", "negative_volume", "high_below_low", "unsorted",
    "duplicate", "gap", "naive_timestamp", "bad_timestamp", "mixed_timestamps", "too_few",
]  # fmt: skip


@pytest.mark.parametrize("name", COLUMN_FORM_MISTAKES)
def test_column_form_mistakes_get_the_row_forms_message(window, name):
    rows = _broken(window, name)
    from_rows = rejection(json.dumps({"candles": rows}).encode())
    from_columns = rejection(json.dumps({"candles": _columns(rows)}).encode())
    assert from_columns.error == from_rows.error
    assert from_columns.reason == from_rows.reason
    assert from_rows.error.startswith("candles")


def test_column_form_needs_equal_lengths_and_every_column(window):
    columns = _columns(candles_payload(window))
    columns["open"] = columns["open"][:-1]
    error = rejection(json.dumps({"candles": columns}).encode())
    assert error.error.startswith("candles: all columns must have the same length")
    assert "open 299" in error.error and "close 300" in error.error
    del columns["volume"]
    assert rejection(json.dumps({"candles": columns}).encode()).error.startswith(
        "candles.volume: Field required"
    )


# ---------------------------------------------------------------- timestamps without pandas


def _random_stamps(rng: np.random.Generator, n: int) -> list[str]:
    """Canonical-looking ISO 8601 strings, some of them impossible dates or offsets."""
    stamps = []
    for _ in range(n):
        year = int(rng.choice([1, 4, 100, 400, 1900, 1970, 2000, 2024, 2100, 9999]))
        month, day = int(rng.integers(0, 14)), int(rng.integers(0, 33))
        hour, minute, second = int(rng.integers(0, 26)), int(rng.integers(0, 61)), 0
        text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
        if rng.random() < 0.5:
            text += "Z"
        else:
            sign = "+" if rng.random() < 0.5 else "-"
            text += f"{sign}{int(rng.integers(0, 25)):02d}:{int(rng.integers(0, 61)):02d}"
        stamps.append(text)
    return stamps


def test_timestamp_decoding_accepts_and_refuses_as_pandas_does():
    """``timestamps_to_us`` decodes canonical ISO strings with NumPy: each string alone must
    give pandas' instant, or be refused by the same rule (its fallback is pandas)."""
    from features.candles import _canonical_iso_us, parse_timestamps, timestamps_to_us

    rng = np.random.default_rng(7)
    stamps = _random_stamps(rng, 2000)
    agreed = refused = 0
    for stamp in stamps:
        try:
            expected = parse_timestamps(pd.Series([stamp])).astype("datetime64[us, UTC]")
        except (CandleValidationError, ValueError, OverflowError) as exc:
            with pytest.raises(type(exc)):
                timestamps_to_us([stamp])
            refused += 1
            continue
        assert timestamps_to_us([stamp]).tolist() == expected.array.asi8.tolist(), stamp
        fast = _canonical_iso_us([stamp])  # every string here has a canonical layout
        assert fast is not None and fast.tolist() == expected.array.asi8.tolist(), stamp
        agreed += 1
    assert agreed > 500 and refused > 500  # both sides of every rule were exercised
    off_layout = [
        "0000-01-01T00:00:00Z",  # NumPy reads year 0; the rules refuse it
        "2021-01-0aT00:00:00Z",
        "2021/01/01T00:00:00Z",
        "2021-01-01 00:00:00Z",
        "2021-01-01T00:00:00*01:00",
        "2021-01-01T00:00:00+01-00",
        "２０２１-01-01T00:00:00Z",
    ]
    for stamp in off_layout:
        assert _canonical_iso_us([stamp]) is None, stamp
        assert _canonical_iso_us(["2021-01-01T00:00:00Z", stamp]) is None, stamp
    leap = ["2024-02-29T23:00:00Z", "2000-02-29T00:00:00+01:00", "1900-03-01T00:00:00-05:30"]
    expected = parse_timestamps(pd.Series(leap)).astype("datetime64[us, UTC]").array.asi8
    np.testing.assert_array_equal(timestamps_to_us(leap), expected)


# ---------------------------------------------------------------- the fast parse path


def _via_pydantic(payload):
    """The reference: the window validated by the pydantic schema alone."""
    from serving.schemas import Window
    from serving.windows import _validate

    return request_windows(_validate(Window, payload), **LIMITS)


def test_fast_parse_path_gives_the_pydantic_schemas_windows(window):
    """``parse_predict`` takes plainly valid windows without building a pydantic object per
    candle; the windows must be exactly the schema's, in every form a client sends."""
    rows = candles_payload(window)
    epoch = [
        {**c, "timestamp": int(t.value // 1_000_000)}
        for c, t in zip(rows, window["timestamp"], strict=True)
    ]
    payloads = {
        "rows_iso": rows,
        "rows_epoch_ms": epoch,
        "rows_epoch_as_doubles": [{**c, "timestamp": float(c["timestamp"])} for c in epoch],
        "integer_volumes": [{**c, "volume": int(c["volume"])} for c in rows],
        "extra_keys_ignored": [{**c, "trades": 12} for c in rows],
        "columns": _columns(rows),
    }  # fmt: skip
    for name, candles in payloads.items():
        (fast,) = request_windows(parse_predict({"candles": candles}), **LIMITS)
        (reference,) = _via_pydantic({"candles": candles})
        np.testing.assert_array_equal(fast.ohlcv, reference.ohlcv, err_msg=name)
        np.testing.assert_array_equal(fast.timestamps_us, reference.timestamps_us, err_msg=name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timestamp": "2" * 65}, "candles row 4: timestamp: must be an ISO 8601 string"),
        ({"timestamp": ""}, "candles row 4: timestamp: must be an ISO 8601 string"),
        ({"timestamp": True}, "candles row 4: timestamp: must be an ISO 8601 string"),
        ({"open": True}, "candles row 4: open: Input should be a valid number"),
        ({"volume": "1.5"}, "candles row 4: volume: Input should be a valid number"),
        ({"high": float("inf")}, "candles row 4: high: Input should be a finite number"),
    ],
)
def test_fast_parse_path_leaves_near_misses_to_the_schema(window, change, message):
    candles = candles_payload(window)
    candles[4] = {**candles[4], **change}
    with pytest.raises(InvalidRequest) as rejected:
        parse_predict({"candles": candles})
    assert rejected.value.error.startswith(message), rejected.value.error


def _outcome(decoder, body: bytes):
    """What a decoder makes of ``body``: the request's non-candle fields and its validated
    window(s), or the refusal's reason and message."""
    try:
        request = decoder(body)
        found = request_windows(request, **LIMITS)
    except InvalidRequest as exc:
        return ("refused", exc.reason, exc.error)
    fields = request.model_dump(exclude={"candles", "windows"})
    if isinstance(request, PredictBatch):
        fields["windows"] = [w.model_dump(exclude={"candles"}) for w in request.windows]
    return ("taken", fields, [(w.field, w.timestamps_us.tolist(), w.ohlcv.tolist()) for w in found])


def _bodies(window: pd.DataFrame) -> dict[str, bytes]:
    """Valid requests in every form a client sends, then near misses the typed decoder must
    leave to the general path (or refuse as it does)."""
    rows = candles_payload(window)
    epoch = [
        {**c, "timestamp": int(t.value // 1_000_000)}
        for c, t in zip(rows, window["timestamp"], strict=True)
    ]
    dumps = json.dumps
    valid = {
        "rows_iso": dumps({"candles": rows}),
        "rows_epoch_ms": dumps({"candles": epoch}),
        "columns": dumps({"candles": _columns(rows)}),
        "columns_epoch_ms": dumps({"candles": _columns(epoch)}),
        "integer_volumes": dumps({"candles": [{**c, "volume": int(c["volume"])} for c in rows]}),
        "extra_keys_ignored": dumps({"candles": [{**c, "n": 1} for c in rows], "note": "x"}),
        "position_and_bars_held": dumps({"candles": rows, "position": "long", "bars_held": 3}),
        "batch": dumps(
            {
                "windows": [
                    {"candles": rows},
                    {"candles": _columns(epoch), "position": "short", "bars_held": 2},
                ]
            }
        ),
    }
    text = dumps({"candles": rows})
    misses = {
        "epoch_as_doubles": dumps({"candles": [{**c, "timestamp": c["timestamp"] + 0.0}
                                               for c in epoch]}),
        "nan_token": text.replace(str(rows[3]["open"]), "NaN", 1),
        "infinity_token": text.replace(str(rows[3]["open"]), "-Infinity", 1),
        "out_of_range": text.replace(str(rows[3]["open"]), "1e400", 1),
        "bool_price": dumps({"candles": [*rows[:3], {**rows[3], "open": True}, *rows[4:]]}),
        "string_price": dumps({"candles": [*rows[:3], {**rows[3], "open": "1.5"}, *rows[4:]]}),
        "null_price": dumps({"candles": [*rows[:3], {**rows[3], "open": None}, *rows[4:]]}),
        "missing_field": dumps({"candles": [*rows[:3], {k: v for k, v in rows[3].items()
                                                        if k != "low"}, *rows[4:]]}),
        "long_timestamp": dumps({"candles": [*rows[:3], {**rows[3], "timestamp": "2" * 65},
                                             *rows[4:]]}),
        "empty_timestamp": dumps({"candles": [*rows[:3], {**rows[3], "timestamp": ""}, *rows[4:]]}),
        "negative_epoch": dumps({"candles": [*epoch[:3], {**epoch[3], "timestamp": -1},
                                             *epoch[4:]]}),
        "mixed_timestamps": dumps({"candles": [*rows[:3], epoch[3], *rows[4:]]}),
        "bool_timestamp": dumps({"candles": [*epoch[:3], {**epoch[3], "timestamp": True},
                                             *epoch[4:]]}),
        "epoch_past_9999": dumps({"candles": [*epoch[:3], {**epoch[3],
                                                           "timestamp": EPOCH_MS_MAX + 1},
                                              *epoch[4:]]}),
        "ragged_columns": dumps({"candles": {**_columns(rows), "open": [1.0]}}),
        "empty_candles": dumps({"candles": []}),
        "both_forms": dumps({"candles": rows, "windows": [{"candles": rows}]}),
        "batch_no_windows": dumps({"windows": []}),
        "batch_too_many_windows": dumps({"windows": [{"candles": rows[:60]}] * 65}),
        "batch_window_too_long": dumps({"windows": [{"candles": rows}, {"candles": rows * 7}]}),
        "batch_bool_price": dumps({"windows": [{"candles": rows}, {"candles": [
            *rows[:3], {**rows[3], "open": True}, *rows[4:]]}]}),
        "batch_window_without_candles": dumps({"windows": [{"candles": rows}, {"bars_held": 1}]}),
        "batch_bad_position": dumps({"windows": [{"candles": rows}, {"candles": rows,
                                                                     "position": "up"}]}),
        "batch_gap": dumps({"windows": [{"candles": rows}, {"candles": rows[:9] + rows[10:]}]}),
        "batch_not_a_list": dumps({"windows": {"candles": rows}}),
        "nested_too_deeply": text[:-1] + ', "position": ' + "[" * 5000 + "]" * 5000 + "}",
        "nested_a_little": text[:-1] + ', "position": ' + "[" * 50 + "]" * 50 + "}",
        "bad_position": dumps({"candles": rows, "position": "sideways"}),
        "null_bars_held": dumps({"candles": rows, "bars_held": "three"}),
        "too_many_candles": dumps({"candles": rows * 7}),
        "too_many_columns": dumps({"candles": _columns(rows * 7)}),
        "one_column_too_long": dumps({"candles": {**_columns(rows), "open": [1.0] * 2100}}),
        "not_an_object": dumps([rows]),
        "trailing_garbage": text + " x",
        "bom": "\ufeff" + text,
    }  # fmt: skip
    misses.update(
        {name: dumps({"candles": _broken(window, name)}) for name in COLUMN_FORM_MISTAKES}
    )
    return {name: body.encode() for name, body in {**valid, **misses}.items()} | {
        "not_utf8": text.encode().replace(b'"2021', b'"\xff2021', 1)
    }


def test_typed_one_window_decoder_agrees_with_the_general_path_on_every_body(window):
    """The service decodes one-window requests from their bytes with msgspec
    (:class:`serving.windows.WindowDecoder`), the rest as before. Every body, valid or not,
    must come out exactly as the general path makes it: the same windows and fields, or the
    same refusal, reason and message."""
    bodies = _bodies(window)
    for name, body in bodies.items():
        assert _outcome(decode, body) == _outcome(general_decode, body), name
    # The typed decoder really takes the valid forms (else this test compared a path with itself)
    taken = ("rows_iso", "rows_epoch_ms", "columns", "columns_epoch_ms", "integer_volumes",
             "extra_keys_ignored", "position_and_bars_held", "batch")  # fmt: skip
    for name in taken:
        assert FAST_PREDICT(bodies[name]) is not None, name
    # ... and leaves every near miss to the general path, except the size limit, which it
    # applies itself (with the general path's message, checked above).
    judged_by_it = {"too_many_candles", "too_many_columns", "one_column_too_long",
                    "bad_position", "null_bars_held",
                    "batch_too_many_windows", "batch_window_too_long", "batch_bad_position",
                    "batch_gap", "nested_a_little", "mixed_timestamps",
                    *COLUMN_FORM_MISTAKES}  # fmt: skip
    for name in set(bodies) - set(taken) - judged_by_it:
        assert FAST_PREDICT(bodies[name]) is None, name


def test_typed_indicators_decoder_agrees_with_the_general_path(window):
    fast = WindowDecoder(IndicatorsRequest, max_candles=LIMITS["max_candles"])
    with_fast = ValidatedJSON(
        pydantic_model=IndicatorsRequest, parse=parse_indicators, fast_decode=fast
    ).decode
    general = ValidatedJSON(pydantic_model=IndicatorsRequest, parse=parse_indicators).decode
    rows = candles_payload(window)
    bodies = {
        "default": {"candles": rows},
        "all_rows": {"candles": _columns(rows), "all_rows": True},
        "all_rows_not_bool": {"candles": rows, "all_rows": "yes"},
        "windows_key_ignored": {"candles": rows, "windows": []},
    }
    for name, payload in bodies.items():
        body = json.dumps(payload).encode()
        assert _outcome(with_fast, body) == _outcome(general, body), name
    assert fast(json.dumps(bodies["all_rows"]).encode()).all_rows is True
