"""Monitoring inside the service: the prediction log and the live data-drift gauges.

Prediction log: every answered prediction (the window's features, ``probability_up``,
``signal``, ``model_tag``, ``horizon_bars`` and the last candle's open time as
``candle_timestamp``) is recorded with BentoML's monitoring API (``bentoml.monitor``). With the
``default`` monitor type of BentoML 1.4.39 this is one JSON object per line in
``<monitoring.options.log_path>/btcusdt_predictions/data/data.<worker>.log``, rotated every
24 hours (``TimedRotatingFileHandler(when="D")``, old files kept as ``data.<worker>.log.<date>``),
plus the column schema in ``.../schema/``. ``monitoring.enabled: false`` turns it off.
``python -m monitoring.drift`` and ``python -m monitoring.outcomes`` read these files.

ClickHouse (``BTC_SERVE_CLICKHOUSE_URL``, off by default): the same rows also go to the
``predictions`` table, through this worker's on-disk spool (:mod:`serving.clickhouse`).

Live drift: each API worker keeps the features of its newest ``drift_window`` predictions and,
every ``drift_every`` predictions, recomputes PSI and KS of each feature against the model's
``reference.json`` (read by :func:`artifact.read_reference`; statistics from
:mod:`monitoring.drift_stats`) in a background thread, off the request path. A model saved
without ``reference.json`` is served without drift gauges (and a warning in the log).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bentoml
import numpy as np
from bentoml._internal.context import trace_context

from artifact import REFERENCE_FILE, LoadedModel, read_reference
from features import FEATURE_NAMES
from monitoring.drift_stats import drift_table
from serving.clickhouse import ClickHouseSink
from serving.logs import current_request_id, log_event
from serving.metrics import service_metrics
from serving.settings import ServeSettings

MONITOR_NAME = "btcusdt_predictions"
"""The ``bentoml.monitor`` name: the folder of the prediction log under the log path."""
CANDLE_TIMESTAMP = "candle_timestamp"
"""Column of the last input candle's open time (``timestamp`` is BentoML's own log time)."""
DEFAULT_LOG_PATH = "prediction_logs"
"""Log folder when BentoML's configuration names none (its built-in default, ``monitoring``,
is this project's ``monitoring/`` package folder when served from the repository)."""


def monitor_options() -> dict[str, Any] | None:
    """Options for ``bentoml.monitor``: None (BentoML's configuration) unless that leaves the
    ``default`` monitor at BentoML's built-in ``log_path``; then the same with
    :data:`DEFAULT_LOG_PATH`."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    config = BentoMLContainer.config.monitoring
    options = dict(config.options.get() or {})
    if config.type.get() in (None, "default") and options.get("log_path") == "monitoring":
        return {**options, "log_path": DEFAULT_LOG_PATH}
    return None


def load_reference(tag: str) -> dict[str, Any] | None:
    """The model's reference profile, or None (with a warning) if it was saved without one."""
    profile = read_reference(tag)
    if profile is None:
        log_event(
            "drift_gauges_off",
            level=logging.WARNING,
            model_tag=tag,
            reason=f"the model has no {REFERENCE_FILE} (saved before drift monitoring); "
            "retrain it to get drift gauges",
        )
    return profile


class LiveDrift:
    """The newest ``window_rows`` feature rows (a ring buffer) and the drift gauges over them."""

    def __init__(
        self,
        profile: dict[str, Any],
        *,
        model_tag: str,
        window_rows: int,
        every: int,
        min_rows: int,
        min_interval_s: float = 0.0,
    ):
        self.profile = profile
        self.model_tag = model_tag
        self.every = every
        self.min_interval_s = min_interval_s
        self._last_export = -math.inf
        self.min_rows = min(min_rows, window_rows)
        self._rows = np.empty((window_rows, len(FEATURE_NAMES)))
        self._next = 0
        self._filled = 0
        self._since_export = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift")
        self._lock = threading.Lock()
        self._snapshot: np.ndarray | None = None
        self._exporting = False

    def observe(self, features: np.ndarray) -> None:
        """Add rows; when due, hand a snapshot to the background export (one export runs at a
        time; a snapshot taken while it runs replaces any older one still waiting)."""
        capacity = len(self._rows)
        for row in features[-capacity:]:
            self._rows[self._next] = row
            self._next = (self._next + 1) % capacity
        self._filled = min(self._filled + len(features), capacity)
        self._since_export += len(features)
        if self._filled < self.min_rows or self._since_export < self.every:
            return
        now = time.monotonic()
        if now - self._last_export < self.min_interval_s:
            return
        self._last_export = now
        self._since_export = 0
        with self._lock:
            self._snapshot = self._rows[: self._filled].copy()
            if not self._exporting:
                self._exporting = True
                self._executor.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                rows, self._snapshot = self._snapshot, None
                if rows is None:
                    self._exporting = False
                    return
            try:
                self.export(rows)
            except Exception as exc:  # keep exporting later snapshots
                log_event("drift_export_failed", level=logging.ERROR, error=repr(exc))

    def export(self, rows: np.ndarray) -> None:
        """Set the PSI and KS gauges of every feature from ``rows``."""
        metrics = service_metrics()
        table = drift_table(self.profile, rows, FEATURE_NAMES)
        for name, entry in table.items():
            metrics.feature_psi.labels(feature=name, model_tag=self.model_tag).set(entry["psi"])
            metrics.feature_ks.labels(feature=name, model_tag=self.model_tag).set(entry["ks"])
        metrics.drift_rows.labels(model_tag=self.model_tag).set(len(rows))


class PredictionMonitor:
    """The service's monitoring: :meth:`start` once per worker, :meth:`record` per answer."""

    def __init__(self, served: LoadedModel, settings: ServeSettings):
        self.served = served
        self.settings = settings
        self.drift: LiveDrift | None = None
        self.log_options: dict[str, Any] | None = None
        self.clickhouse: ClickHouseSink | None = None
        self._log_failed = False

    def start(self) -> None:
        """Settle the log's options; start the ClickHouse sink (when configured); load the
        model's reference profile (if it has one)."""
        self.log_options = monitor_options()
        dsn = self.settings.clickhouse_dsn
        if dsn is not None:
            from bentoml._internal.context import server_context

            self.clickhouse = ClickHouseSink(
                dsn,
                feature_names=FEATURE_NAMES,
                spool_dir=self.settings.clickhouse_spool_dir,
                spool_max_bytes=self.settings.clickhouse_spool_max_bytes,
                batch_rows=self.settings.clickhouse_batch_rows,
                flush_s=self.settings.clickhouse_flush_s,
                retry_max_s=self.settings.clickhouse_retry_max_s,
                worker_index=server_context.worker_index or 0,
            )
            self.clickhouse.start()
        profile = load_reference(self.served.tag)
        if profile is not None:
            self.drift = LiveDrift(
                profile,
                model_tag=self.served.tag,
                window_rows=self.settings.drift_window,
                every=self.settings.drift_every,
                min_rows=self.settings.drift_min_rows,
                min_interval_s=self.settings.drift_min_interval_s,
            )

    def record(self, features: np.ndarray, answers: list[dict[str, Any]]) -> None:
        """Log the predictions and feed the drift window; never fails the request.

        The log's ``request_id`` column (BentoML's trace context) is set to the request's
        ``x-request-id``, the id its answer, JSON logs and ClickHouse rows carry (BentoML would
        put a span id there, or nothing once unsampled tracing is skipped: serving/tracing.py).
        """
        trace_context.request_id = current_request_id()  # type: ignore[assignment]
        try:
            log_predictions(features, answers, options=self.log_options)
        except Exception as exc:  # a full disk must not turn answers into errors
            if not self._log_failed:
                log_event("prediction_log_failed", level=logging.ERROR, error=repr(exc))
            self._log_failed = True
        if self.clickhouse is not None:
            self.clickhouse.record(features, answers, current_request_id())
        if self.drift is not None:
            self.drift.observe(features)

    def stop(self) -> None:
        """Ship what the ClickHouse sink has spooled (one last try) and stop it."""
        if self.clickhouse is not None:
            self.clickhouse.stop()


_monitors: dict[str, Any] = {}  # the one BentoML monitor object per name, once created


def log_predictions(
    features: np.ndarray, answers: list[dict[str, Any]], *, options: dict[str, Any] | None = None
) -> None:
    """One prediction-log record per answer (``bentoml.monitor``; a no-op when disabled).
    ``options`` replace the configured ``monitoring.options`` (used on the first call only).

    The first call goes through ``bentoml.monitor``, which creates the monitor; later ones
    record on that same object directly (what ``bentoml.monitor`` does, without its
    dependency injection: ~40 % of this function's CPU)."""
    monitor = _monitors.get(MONITOR_NAME)
    if monitor is None:
        recorder = (  # monitor_options=None would not mean "as configured"
            bentoml.monitor(MONITOR_NAME)
            if options is None
            else bentoml.monitor(MONITOR_NAME, monitor_options=options)
        )
        with recorder as monitor:
            _log_columns(monitor, features, answers)
        _monitors[MONITOR_NAME] = monitor
        return
    monitor.start_record()
    _log_columns(monitor, features, answers)
    monitor.stop_record()


def _log_columns(monitor: Any, features: np.ndarray, answers: list[dict[str, Any]]) -> None:
    for j, name in enumerate(FEATURE_NAMES):
        monitor.log_batch(features[:, j].tolist(), name, "feature", "numerical")
    columns = (
        (CANDLE_TIMESTAMP, "feature", "categorical"),
        ("probability_up", "prediction", "numerical"),
        ("signal", "prediction", "categorical"),
        ("model_tag", "prediction", "categorical"),
        ("horizon_bars", "prediction", "numerical"),
    )
    for name, role, data_type in columns:
        key = "timestamp" if name == CANDLE_TIMESTAMP else name
        monitor.log_batch([a[key] for a in answers], name, role, data_type)
