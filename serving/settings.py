"""Serving settings: one typed object, read from ``BTC_SERVE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stores.clickhouse import ClickHouseDsn, parse_dsn

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
        drift_window: feature rows kept for the live drift gauges (the newest predictions').
        drift_every: predictions between two recomputations of the drift gauges.
        drift_min_interval_s: and at least this long between two (the gauges are scraped
            every 15-30 s; recomputing PSI/KS for every 50 predictions under load cost ~10 %
            of an API worker's CPU).
        drift_min_rows: rows needed before the drift gauges are exported at all.
        batch_dispatch: when a runner sends a batch (``serving.batching``): ``idle`` (the
            default) as soon as its worker is free, ``bentoml`` after BentoML 1.4's learnt wait.
        runner_probe_after_s: a runner call unanswered this long triggers a readiness probe of
            the runner (``serving.guard``).
        runner_probe_timeout_s: a runner that does not answer its probe this fast is down:
            calls get a 503 at once until it answers again.
        clickhouse_url: ``clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE`` (native
            protocol): also store every answered prediction in that database's
            ``predictions`` table (``serving.clickhouse``); empty (the default) means off. A
            malformed value stops the start with the reason.
        clickhouse_spool_dir: where each API worker spools rows until ClickHouse has them
            (``<dir>/worker-<k>``; keep it across restarts). Relative to the working directory.
        clickhouse_spool_max_bytes: most bytes one worker's spool may hold (~310 bytes a row);
            past it new rows are dropped, counted and logged as errors.
        clickhouse_batch_rows: ship as soon as this many rows wait (else every
            ``clickhouse_flush_s``).
        clickhouse_flush_s: longest a row waits in the spool while ClickHouse is up.
        clickhouse_retry_max_s: longest wait between two retries while ClickHouse is down.
    """

    # No setting's value in error messages: the ClickHouse URL may carry a password.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True
    )

    model_tag: str | None = None
    max_candles: int = Field(default=2048, ge=2)
    max_windows: int = Field(default=64, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    log_level: str = "INFO"
    drift_window: int = Field(default=1000, ge=10)
    drift_every: int = Field(default=50, ge=1)
    drift_min_interval_s: float = Field(default=5.0, ge=0)
    drift_min_rows: int = Field(default=100, ge=10)
    batch_dispatch: Literal["idle", "bentoml"] = "idle"
    runner_probe_after_s: float = Field(default=1.0, gt=0)
    runner_probe_timeout_s: float = Field(default=2.0, gt=0)
    clickhouse_url: SecretStr | None = None
    clickhouse_spool_dir: Path = Path("clickhouse_spool")
    clickhouse_spool_max_bytes: int = Field(default=512 * 1024 * 1024, ge=64 * 1024)
    clickhouse_batch_rows: int = Field(default=1000, ge=1)
    clickhouse_flush_s: float = Field(default=1.0, gt=0)
    clickhouse_retry_max_s: float = Field(default=30.0, gt=0)

    @field_validator("clickhouse_url")
    @classmethod
    def _valid_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            try:
                parse_dsn(value.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}CLICKHOUSE_URL: {exc}") from None
            return value
        return None

    @property
    def clickhouse_dsn(self) -> ClickHouseDsn | None:
        """The parsed ``clickhouse_url``, or None when the sink is off."""
        return parse_dsn(self.clickhouse_url.get_secret_value()) if self.clickhouse_url else None
