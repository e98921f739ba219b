"""The Bento service: ``predict``, ``indicators`` and ``model_info`` over HTTP and gRPC.

``bentoml serve service:svc`` (HTTP) and ``bentoml serve-grpc service:svc`` (gRPC) serve the
same APIs. Features and inference run in adaptive-batching runners (:mod:`serving.runners`:
``direction`` computes a ``predict``'s features and P(up) in one call, ``features`` serves
``indicators``); the handlers validate, call a runner and shape the answer. The model is
resolved when this module is imported at start-up (``BTC_SERVE_MODEL_TAG``, else
``production``, else the newest) and pinned for every worker; a missing or mismatched model
stops the start with the reason.
"""

from __future__ import annotations

import functools
import os

import bentoml
from bentoml._internal.context import server_context

from artifact import load_model, model_summary
from features import FEATURE_SET_VERSION
from serving import answers, grpc_status, schemas
from serving.batching import install_dispatcher
from serving.guard import runner_sessions_ignore_environment
from serving.io import ValidatedJSON
from serving.logs import configure_logging, log_event
from serving.metrics import publish_served_model
from serving.middleware import ApiMiddleware, RequestIdInterceptor
from serving.monitor import PredictionMonitor
from serving.runners import DirectionRunnable, FeatureRunnable, run
from serving.settings import ENV_PREFIX, ServeSettings
from serving.startup import (
    listening_address,
    schedule_ready_announcement,
    silence_legacy_api_warnings,
)
from serving.tracing import skip_unsampled_tracing
from serving.windows import (
    WindowDecoder,
    parse_indicators,
    parse_model_info,
    parse_predict,
    request_windows,
)

silence_legacy_api_warnings()  # the legacy API on purpose (gRPC, runners): serving/startup.py
settings = ServeSettings()
served = load_model(settings.model_tag or None)
os.environ[f"{ENV_PREFIX}MODEL_TAG"] = served.tag  # every worker process loads this version
limits = {
    "min_candles": served.warmup_bars + 1,
    "max_candles": settings.max_candles,
    "max_windows": settings.max_windows,
    "interval": served.bar_interval,
}
# Oversized requests are refused on the raw JSON, before every candle is validated.
parse_predict_sized = functools.partial(
    parse_predict, max_candles=settings.max_candles, max_windows=settings.max_windows
)
parse_indicators_sized = functools.partial(parse_indicators, max_candles=settings.max_candles)
# Requests straight from their JSON bytes, typed (what is not plainly valid: the general path).
decode_predict = WindowDecoder(
    schemas.PredictWindow,
    batch=schemas.PredictBatch,
    max_candles=settings.max_candles,
    max_windows=settings.max_windows,
)
decode_indicators = WindowDecoder(schemas.IndicatorsRequest, max_candles=settings.max_candles)
install_dispatcher(settings.batch_dispatch)  # batches sent when the runner is free
skip_unsampled_tracing()  # no OpenTelemetry spans per request while none is kept
runner_sessions_ignore_environment()  # no proxy/.netrc lookups per runner call (serving/guard.py)
monitor = PredictionMonitor(served, settings)  # prediction log + drift gauges (serving/monitor.py)

features_runner = bentoml.legacy.Runner(FeatureRunnable, name="features")
model_runner = bentoml.legacy.Runner(
    DirectionRunnable,
    name="direction",
    models=[bentoml.models.get(served.tag)],
    runnable_init_params={"model_tag": served.tag},
)
svc = bentoml.legacy.Service("btcusdt_direction", runners=[features_runner, model_runner])
api_paths = ("/predict", "/indicators", "/model_info")
svc.add_asgi_middleware(
    ApiMiddleware,
    paths=api_paths,
    max_body_bytes=settings.max_body_bytes,
)
svc.add_grpc_interceptor(RequestIdInterceptor)
grpc_status.install()  # gRPC metrics and access log under the status the client got


@svc.on_startup
async def _started(_context: object) -> None:
    configure_logging(settings.log_level)
    publish_served_model(served, FEATURE_SET_VERSION)
    monitor.start()
    log_event("started", model_tag=served.tag, stage=served.stage)
    if server_context.worker_index in (None, 1):  # one ready line per server, not per worker
        protocol = "grpc" if server_context.service_type == "grpc_api_server" else "http"
        schedule_ready_announcement(
            svc.runners, model_tag=served.tag, protocol=protocol, address=listening_address()
        )


@svc.on_shutdown
def _stopping(_context: object) -> None:
    monitor.stop()


@svc.api(
    input=ValidatedJSON(
        pydantic_model=schemas.PredictRequest,
        parse=parse_predict_sized,
        fast_decode=decode_predict,
    ),
    output=bentoml.io.JSON(pydantic_model=schemas.PredictResponse),
)
async def predict(request: schemas.PredictWindow | schemas.PredictBatch) -> dict:
    """P(up) and the signal (the decision policy's target position from the request's
    ``position``) at the close of each window's last candle."""
    windows = request_windows(request, **limits)
    held = answers.holdings(served, request)
    computed = await run(model_runner.predict_windows, [w.ohlcv for w in windows])
    features, probabilities = computed[:, :-1], computed[:, -1]
    answers.raise_if_not_finite(features, windows)
    predictions = answers.predictions(served, windows, probabilities, held)
    monitor.record(features, predictions)  # the prediction log: each answer with its request id
    if isinstance(request, schemas.PredictBatch):
        return {"predictions": predictions}
    return predictions[0]


@svc.api(
    input=ValidatedJSON(
        pydantic_model=schemas.IndicatorsRequest,
        parse=parse_indicators_sized,
        fast_decode=decode_indicators,
    ),
    output=bentoml.io.JSON(pydantic_model=schemas.IndicatorsResponse),
)
async def indicators(request: schemas.IndicatorsRequest) -> dict:
    """The model's features for the last candle (``all_rows``: every warmed-up candle)."""
    (window,) = request_windows(request, **limits)
    if request.all_rows:
        (result,) = await run(features_runner.all_rows, [window.frame])
        rows = answers.computed_rows(result, window)
        return answers.indicators(served, window, rows[-1], rows)
    features = await run(features_runner.last_row, [window.ohlcv])
    answers.raise_if_not_finite(features, [window])
    return answers.indicators(served, window, features[0])


@svc.api(
    input=ValidatedJSON(
        pydantic_model=schemas.ModelInfoRequest, parse=parse_model_info, empty_ok=True
    ),
    output=bentoml.io.JSON(pydantic_model=schemas.ModelInfoResponse),
)
async def model_info(_request: schemas.ModelInfoRequest) -> dict:
    """The served model: tag, stage, metrics, feature contract, training and holdout ranges,
    age and expiry."""
    return model_summary(served)
