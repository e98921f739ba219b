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
        drift_window: feature rows kept for the live drift gauges (the newest predictions').
        drift_every: predictions between two recomputations of the drift gauges.
        drift_min_rows: rows needed before the drift gauges are exported at all.
        runner_probe_after_s: a runner call unanswered this long triggers a readiness probe of
            the runner (``serving.guard``).
        runner_probe_timeout_s: a runner that does not answer its probe this fast is down:
            calls get a 503 at once until it answers again.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    model_tag: str | None = None
    max_candles: int = Field(default=2048, ge=2)
    max_windows: int = Field(default=64, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    log_level: str = "INFO"
    benchmark_api: bool = False
    drift_window: int = Field(default=1000, ge=10)
    drift_every: int = Field(default=50, ge=1)
    drift_min_rows: int = Field(default=100, ge=10)
    runner_probe_after_s: float = Field(default=1.0, gt=0)
    runner_probe_timeout_s: float = Field(default=2.0, gt=0)
