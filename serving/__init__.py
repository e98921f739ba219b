"""The parts of the Bento service that are more than wiring (``service.py`` stays short).

Modules:
    settings: the typed serving settings (env prefix ``BTC_SERVE_``).
    schemas: pydantic request/response models (the OpenAPI document is generated from them).
    io: a ``bentoml.io.JSON`` whose every failure is a 400 with a readable message.
    windows: parsed request -> validated candle windows (limits + ``validate_candles``).
    runners: the batchable runnables (features, model inference) and the runner call.
    guard: runner calls that fail fast (503) while a runner is down; no proxy lookups per call.
    answers: runner outputs -> the contract's answers.
    monitor: the prediction log (``bentoml.monitor``) and the live drift gauges.
    errors: ``InvalidRequest`` (400 / INVALID_ARGUMENT with the ``{"error": ...}`` body).
    metrics: the service's own Prometheus metrics.
    logs: structured JSON logs and the request id.
    middleware: the ASGI middleware (body limit, error bodies, request id), gRPC interceptor.

The model itself (store, contract, ONNX predictor) is :mod:`artifact`'s.
"""
