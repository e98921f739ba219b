"""Serving settings: one typed object, read from ``BTC_SERVE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BTC_SERVE_"


class ServeSettings(BaseSettings):
    """What an operator may change without editing code.

    Runner batching (``max_batch_size``, ``max_latency_ms``) and worker counts are BentoML
    configuration (``configuration.yaml``, ``BENTOML_CONFIG``), not settings here.

    Attributes:
        model_tag: the model to serve (``btcusdt_mlp:<version>``); empty means the
            ``production`` version, else the newest one in the store.
        max_candles: most candles accepted in one window.
        max_windows: most windows accepted in one batch request.
        max_body_bytes: largest HTTP request body accepted (413 above it).
        log_level: level of the service's JSON logs.
        benchmark_api: also serve ``predict_noop`` (predict's input parsing and validation, no
            features, no model), the baseline of ``benchmarks/bench_service.py``; off in
            production.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    model_tag: str | None = None
    max_candles: int = Field(default=2048, ge=2)
    max_windows: int = Field(default=64, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    log_level: str = "INFO"
    benchmark_api: bool = False
