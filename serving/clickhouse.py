"""The ClickHouse sink: every answered prediction into the ``predictions`` table, off the request
path, with nothing lost and nothing doubled (``BTC_SERVE_CLICKHOUSE_URL``; off by default).

- On the request: :meth:`ClickHouseSink.record` encodes the request's rows as one JSON line and
  appends it to this worker's spool file (:class:`stores.spool.Spool`, one ``write(2)``, no
  ``fsync``; ~0.01 ms a row, ``benchmarks/bench_clickhouse_spool.py``). It never waits for
  ClickHouse and never raises.
- A background thread ships the spool: as soon as ``clickhouse_batch_rows`` rows wait, else
  every ``clickhouse_flush_s``; it ``fdatasync``s the spool first, inserts one batch per
  segment read, and marks it shipped only once ClickHouse has answered. ClickHouse down or
  refusing: the batch stays, retried with exponential backoff up to ``clickhouse_retry_max_s``.
- A restart (or ``kill -9``) loses nothing the spool has: the next process holding that
  worker's spool ships it, and a worker also drains spools no live process holds (a worker
  count lowered, a crashed process).
- A batch sent twice (shipped, then the process died before marking it) holds the same row keys
  and ClickHouse keeps one row per key (:mod:`stores.clickhouse`).
- The spool is bounded (``clickhouse_spool_max_bytes``): past it, rows are dropped, counted in
  ``btcusdt_clickhouse_rows_dropped_total`` and logged as errors.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from serving.logs import log_event
from serving.metrics import service_metrics
from stores.clickhouse import (
    PREDICTION_COLUMNS,
    SCHEMA_VERSION,
    ClickHouseDsn,
    ensure_schema,
    insert_predictions,
)
from stores.spool import Spool, SpoolBatch

MAX_INSERT_ROWS = 50_000
"""Most rows in one INSERT (a backlog after an outage goes in several)."""
ADOPT_EVERY_S = 30.0
DROP_LOG_EVERY_S = 10.0
DROP_REASONS = ("spool_full", "spool_error", "corrupt_record", "torn_record")


def _epoch_seconds(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp())


def _b64_floats(values: Any) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f8").tobytes()).decode("ascii")


def _floats_b64(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f8").reshape(shape)


class ClickHouseSink:
    """One per API worker: :meth:`start` at start-up, :meth:`record` per answer, :meth:`stop`."""

    def __init__(
        self,
        dsn: ClickHouseDsn,
        *,
        feature_names: Sequence[str],
        spool_dir: Path,
        spool_max_bytes: int,
        batch_rows: int = 1000,
        flush_s: float = 1.0,
        retry_max_s: float = 30.0,
        worker_index: int = 0,
    ):
        self.dsn = dsn
        self.feature_names = tuple(feature_names)
        self.spool_dir = Path(spool_dir)
        self.spool_max_bytes = spool_max_bytes
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.retry_max_s = retry_max_s
        self.worker_index = worker_index
        self.spool: Spool | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._dropped_unlogged = 0
        self._last_drop_log = 0.0

    # ---------------------------------------------------------------- request path

    def start(self) -> None:
        """Claim this worker's spool and start the shipping thread."""
        header = json.dumps({"schema_version": SCHEMA_VERSION, "features": self.feature_names})
        self.spool = Spool.claim(
            self.spool_dir,
            header=header.encode(),
            max_bytes=self.spool_max_bytes,
            preferred=self.worker_index,
        )
        for reason in DROP_REASONS:  # exported as 0 from the start, so rate() and alerts work
            service_metrics().clickhouse_rows_dropped.labels(reason=reason)
        self._thread = threading.Thread(target=self._run, name="clickhouse-sink", daemon=True)
        self._thread.start()
        log_event(
            "clickhouse_sink_started",
            clickhouse=str(self.dsn),
            spool=str(self.spool.directory),
            rows_waiting=self.spool.pending_rows,
        )

    def record(self, features: np.ndarray, answers: list[dict[str, Any]], request_id: str) -> None:
        """Spool one request's rows (never raises: a failure is counted as dropped rows).

        One JSON line a request; the float columns travel as base64 of their little-endian
        float64 bytes (exact, and ~20x cheaper than formatting each number as text)."""
        spool = self.spool
        if spool is None:
            raise RuntimeError("ClickHouseSink.start() first")
        served_at_us = time.time_ns() // 1000
        try:
            first = answers[0]
            payload = json.dumps(
                {
                    "request_id": request_id,
                    "served_at_us": served_at_us,
                    "model_tag": first["model_tag"],
                    "horizon_bars": first["horizon_bars"],
                    "candle_timestamps": [_epoch_seconds(a["timestamp"]) for a in answers],
                    "signals": [a["signal"] for a in answers],
                    "probability_up": _b64_floats([a["probability_up"] for a in answers]),
                    "features": _b64_floats(features),
                },
                separators=(",", ":"),
            ).encode()
            kept = spool.append(payload, rows=len(answers), time_us=served_at_us)
            reason = "spool_full"
        except Exception as exc:  # a full disk must not turn answers into errors
            kept, reason = False, f"spool_error: {exc!r}"
        if kept:
            if spool.pending_rows >= self.batch_rows:
                self._wake.set()
        else:
            self._dropped(len(answers), reason)

    def _dropped(self, rows: int, reason: str) -> None:
        service_metrics().clickhouse_rows_dropped.labels(reason=reason.split(":")[0]).inc(rows)
        self._dropped_unlogged += rows
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_EVERY_S:
            log_event(
                "clickhouse_rows_dropped",
                level=logging.ERROR,
                rows=self._dropped_unlogged,
                reason=reason,
                spool_bytes=self.spool.pending_bytes if self.spool else None,
                spool_max_bytes=self.spool_max_bytes,
            )
            self._dropped_unlogged = 0
            self._last_drop_log = now

    # ---------------------------------------------------------------- shipping thread

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ship what is spooled (one last try), then stop the thread and release the spool."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.spool is not None and (self._thread is None or not self._thread.is_alive()):
            self.spool.close()

    def _run(self) -> None:
        assert self.spool is not None
        backoff = 0.0
        next_adopt = 0.0
        while True:
            self._wake.wait(max(self.flush_s, backoff))
            self._wake.clear()
            stopping = self._stopping.is_set()
            try:
                self.spool.sync()
                self._ship(self.spool)
                if time.monotonic() >= next_adopt:
                    self._adopt_orphans()
                    next_adopt = time.monotonic() + ADOPT_EVERY_S
                backoff = 0.0
            except Exception as exc:
                service_metrics().clickhouse_insert_failures.inc()
                backoff = min(max(2 * backoff, 0.5), self.retry_max_s)
                log_event(
                    "clickhouse_insert_failed",
                    level=logging.WARNING,
                    clickhouse=str(self.dsn),
                    error=repr(exc)[:500],
                    rows_waiting=self.spool.pending_rows,
                    retry_in_s=backoff,
                )
                self._disconnect()
            self._export_gauges()
            if stopping:
                return

    def _ship(self, spool: Spool) -> None:
        """Insert everything waiting in ``spool``, one batch at a time (raises on failure)."""
        while (batch := spool.read(MAX_INSERT_ROWS)) is not None:
            if batch.torn_bytes:
                self._dropped(1, "torn_record")
                log_event(
                    "clickhouse_spool_torn_record",
                    level=logging.ERROR,
                    spool=str(spool.directory),
                    bytes=batch.torn_bytes,
                )
            columns = self._columns(batch)
            if columns["model_tag"]:
                insert_predictions(self._connected(), self.dsn.database, columns)
            spool.ack(batch)
            service_metrics().clickhouse_rows_sent.inc(len(columns["model_tag"]))

    def _columns(self, batch: SpoolBatch) -> dict[str, list[Any]]:
        """The batch's rows column-wise (a record that cannot be decoded is dropped, counted)."""
        features = json.loads(batch.header)["features"]
        columns: dict[str, list[Any]] = {name: [] for name in (*PREDICTION_COLUMNS, *features)}
        for payload in batch.payloads:
            try:
                record = json.loads(payload)
                stamps, signals = record["candle_timestamps"], record["signals"]
                n = len(stamps)
                probabilities = _floats_b64(record["probability_up"], (n,))
                values = _floats_b64(record["features"], (n, len(features)))
                if len(signals) != n:
                    raise ValueError(f"{len(signals)} signals for {n} rows")
                request = [record[k] for k in ("model_tag", "request_id", "served_at_us")]
                horizon = int(record["horizon_bars"])
            except (ValueError, KeyError, TypeError) as exc:
                self._dropped(1, f"corrupt_record: {exc!r}")
                continue
            model_tag, request_id, served_at_us = request
            columns["model_tag"] += [model_tag] * n
            columns["candle_timestamp"] += stamps
            columns["request_id"] += [request_id] * n
            columns["window_index"] += range(n)
            columns["served_at_us"] += [served_at_us] * n
            columns["probability_up"] += probabilities.tolist()
            columns["signal"] += signals
            columns["horizon_bars"] += [horizon] * n
            for j, name in enumerate(features):
                columns[name] += values[:, j].tolist()
        return columns

    def _adopt_orphans(self) -> None:
        """Ship spools that no live process holds (left by a process that is gone)."""
        assert self.spool is not None
        for directory in Spool.others(self.spool_dir, self.spool.directory):
            orphan = Spool.adopt(directory)
            if orphan is None:
                continue
            try:
                log_event(
                    "clickhouse_spool_adopted", spool=str(directory), rows=orphan.pending_rows
                )
                self._ship(orphan)
            finally:
                orphan.close()

    def _connected(self) -> Any:
        if self._client is None:
            client = self.dsn.client()
            ensure_schema(client, self.dsn.database, self.feature_names)
            self._client = client
        return self._client

    def _disconnect(self) -> None:
        if self._client is not None:
            try:
                self._client.disconnect()
            except Exception:  # already gone
                pass
            self._client = None

    def _export_gauges(self) -> None:
        assert self.spool is not None
        metrics = service_metrics()
        metrics.clickhouse_rows_buffered.set(self.spool.pending_rows)
        oldest = self.spool.read(1, 64 * 1024) if self.spool.pending_rows else None
        age_s = time.time() - oldest.first_time_us / 1e6 if oldest and oldest.payloads else 0.0
        metrics.clickhouse_oldest_unsent_seconds.set(max(age_s, 0.0))
