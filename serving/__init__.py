"""The parts of the Bento service that are more than wiring (``service.py`` stays short).

Modules:
    settings: the typed serving settings (env prefix ``BTC_SERVE_``).
    schemas: pydantic request/response models (the OpenAPI document is generated from them).
    requests: turning a validated request into candle windows (limits + ``validate_candles``).
    io: a ``bentoml.io.JSON`` whose every failure is a 400 with a readable message.
    runners: the batchable ``bentoml.Runnable`` classes (features, model inference).
    metrics: the service's own Prometheus metrics.
    logs: structured JSON logs and the request id.
    middleware: the ASGI middleware (body limit, error bodies, request id) and gRPC interceptor.
"""
