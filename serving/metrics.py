"""The service's own Prometheus metrics, beside BentoML's built-in ones at ``/metrics``.

Created on first use, not at import: BentoML runs each worker with ``PROMETHEUS_MULTIPROC_DIR``
set so that every process (API workers, runners) writes to one shared registry, and a metric
must be created inside the process that records it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
FEATURE_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class ServiceMetrics:
    """Handles on the metrics (``prometheus_client`` objects)."""

    predictions: Any
    probability_up: Any
    rejections: Any
    feature_seconds: Any
    model_info: Any
    model_trained: Any
    model_expiry: Any
    feature_psi: Any
    feature_ks: Any
    drift_rows: Any
    clickhouse_rows_buffered: Any
    clickhouse_rows_sent: Any
    clickhouse_rows_dropped: Any
    clickhouse_oldest_unsent_seconds: Any
    clickhouse_insert_failures: Any


@functools.cache
def service_metrics() -> ServiceMetrics:
    """The metrics of this process, created once."""
    import prometheus_client as prom

    return ServiceMetrics(
        predictions=prom.Counter(
            "btcusdt_predictions",
            "Predictions answered, by signal and model tag.",
            ["signal", "model_tag"],
        ),
        probability_up=prom.Histogram(
            "btcusdt_probability_up",
            "probability_up of the answered predictions.",
            ["model_tag"],
            buckets=PROBABILITY_BUCKETS,
        ),
        rejections=prom.Counter(
            "btcusdt_request_rejections",
            "Requests rejected as invalid (4xx), by reason.",
            ["reason"],
        ),
        feature_seconds=prom.Histogram(
            "btcusdt_feature_computation_seconds",
            "Time to compute the features of one runner batch, by runner method.",
            ["method"],
            buckets=FEATURE_SECONDS_BUCKETS,
        ),
        model_info=prom.Gauge(
            "btcusdt_model_info",
            "The served model (always 1; the labels carry the version).",
            ["model_tag", "stage", "feature_set_version"],
            multiprocess_mode="max",
        ),
        # Timestamps, not ages: a multiprocess gauge cannot tick by itself; Prometheus computes
        # the age as time() - btcusdt_model_trained_timestamp_seconds.
        model_trained=prom.Gauge(
            "btcusdt_model_trained_timestamp_seconds",
            "When the served model was trained (Unix time).",
            ["model_tag"],
            multiprocess_mode="max",
        ),
        model_expiry=prom.Gauge(
            "btcusdt_model_expiry_timestamp_seconds",
            "When the served model expires (Unix time; absent: no expiry recorded).",
            ["model_tag"],
            multiprocess_mode="max",
        ),
        # Drift gauges are set by one API worker from its own window of recent requests; with
        # several workers the most recent value of a live worker is exported.
        feature_psi=prom.Gauge(
            "btcusdt_feature_drift_psi",
            "PSI of each feature's recent values against the model's training reference.",
            ["feature", "model_tag"],
            multiprocess_mode="livemostrecent",
        ),
        feature_ks=prom.Gauge(
            "btcusdt_feature_drift_ks",
            "Two-sample KS statistic of each feature's recent values against the reference.",
            ["feature", "model_tag"],
            multiprocess_mode="livemostrecent",
        ),
        drift_rows=prom.Gauge(
            "btcusdt_feature_drift_window_rows",
            "Recent feature rows the drift gauges were computed from.",
            ["model_tag"],
            multiprocess_mode="livemostrecent",
        ),
        # The ClickHouse sink (serving/clickhouse.py): one spool per API worker; the gauges add
        # up (rows) or take the worst (age) over the live workers.
        clickhouse_rows_buffered=prom.Gauge(
            "btcusdt_clickhouse_rows_buffered",
            "Prediction rows spooled on local disk, not yet acknowledged by ClickHouse.",
            multiprocess_mode="livesum",
        ),
        clickhouse_rows_sent=prom.Counter(
            "btcusdt_clickhouse_rows_sent",
            "Prediction rows inserted into ClickHouse.",
        ),
        clickhouse_rows_dropped=prom.Counter(
            "btcusdt_clickhouse_rows_dropped",
            "Prediction rows that will never reach ClickHouse, by reason (spool_full: the spool "
            "reached BTC_SERVE_CLICKHOUSE_SPOOL_MAX_BYTES).",
            ["reason"],
        ),
        clickhouse_oldest_unsent_seconds=prom.Gauge(
            "btcusdt_clickhouse_oldest_unsent_age_seconds",
            "Age of the oldest spooled row not yet in ClickHouse (0 when none waits).",
            multiprocess_mode="livemax",
        ),
        clickhouse_insert_failures=prom.Counter(
            "btcusdt_clickhouse_insert_failures",
            "Failed attempts to insert a batch into ClickHouse (each is retried).",
        ),
    )


def publish_served_model(served: Any, feature_set_version: str) -> None:
    """Set the served model's gauges: ``btcusdt_model_info`` and, when its metadata records
    them, its training and expiry times (a model without ``expires_at`` has no expiry gauge)."""
    metrics = service_metrics()
    metrics.model_info.labels(served.tag, served.stage, feature_set_version).set(1)
    if served.trained_at is not None:
        metrics.model_trained.labels(served.tag).set(served.trained_at.timestamp())
    if served.expires_at is not None:
        metrics.model_expiry.labels(served.tag).set(served.expires_at.timestamp())
