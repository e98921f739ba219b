"""Reading the service's prediction log back (what ``serving.monitor`` writes).

The log is BentoML's ``default`` monitor output: under the configured ``log_path``,
``btcusdt_predictions/data/data.<worker>.log`` (and its daily rotations
``data.<worker>.log.<YYYY-MM-DD>``), one JSON object per line with the features, the outputs
(``probability_up``, ``signal``, ``model_tag``, ``horizon_bars``), ``candle_timestamp`` (open time
of the window's last candle), ``request_id`` (the request's ``x-request-id``) and BentoML's
``timestamp`` (when it was logged) and ``trace_id``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click
import pandas as pd

from features import FEATURE_NAMES

MONITOR_NAME = "btcusdt_predictions"
"""Same as ``serving.monitor.MONITOR_NAME`` (not imported: the CLIs need no serving code)."""
CANDLE_TIMESTAMP = "candle_timestamp"
LOGGED_AT = "logged_at"
OUTPUT_COLUMNS = ("probability_up", "signal", "model_tag", "horizon_bars")

logger = logging.getLogger(__name__)


class PredictionLogError(ValueError):
    """No prediction log where one was expected, or nothing usable in it."""


def log_options(function: Any) -> Any:
    """The CLIs' shared options: ``--logs`` (where the service wrote its prediction log) or
    ``--source`` (that, or the service's ClickHouse database), ``--model-tag``, ``--since``
    and ``--until`` (candle times, UTC)."""
    options = [
        click.option(
            "--logs",
            type=click.Path(path_type=Path),
            default=Path("prediction_logs"),
            show_default=True,
            help="prediction log: BentoML's monitoring.options.log_path (or a folder/file in it)",
        ),
        click.option(
            "--source",
            help="where the predictions are, instead of --logs: a prediction-log folder or "
            "clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE, the service's ClickHouse "
            "store (BTC_SERVE_CLICKHOUSE_URL)",
        ),
        click.option(
            "--model-tag", help="model whose predictions to read (default: the latest in the log)"
        ),
        click.option("--since", type=utc_timestamp, help="first candle time (UTC)"),
        click.option("--until", type=utc_timestamp, help="last candle time (UTC)"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def prediction_source(args: Any) -> Path | str:
    """``--source`` (a ``clickhouse://`` URL stays a string) if given, else ``--logs``."""
    if args.source is None:
        return Path(args.logs)
    return args.source if args.source.startswith("clickhouse://") else Path(args.source)


def log_files(path: Path) -> list[Path]:
    """The data files of a prediction log: ``path`` itself if it is a file, else every
    ``data.*.log*`` under ``path`` (the log path, the monitor folder or its ``data`` folder)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise PredictionLogError(f"{path}: no such prediction log file or folder")
    files = sorted(p for p in path.rglob("data.*.log*") if p.is_file() and p.parent.name == "data")
    if not files:
        raise PredictionLogError(
            f"{path}: no prediction log files (expected .../{MONITOR_NAME}/data/data.<worker>.log)"
        )
    return files


def read_predictions(
    path: Path,
    *,
    model_tag: str | None = None,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    keep_duplicates: bool = False,
) -> pd.DataFrame:
    """Every logged prediction as a frame, oldest candle first.

    Args:
        path: the log (see :func:`log_files`).
        model_tag: keep only this model's predictions.
        since, until: keep candles with ``since <= candle_timestamp <= until`` (UTC).
        keep_duplicates: keep every answer; by default a candle predicted several times by
            the same model counts once (the last answer logged), so that busy clients do not
            weigh more than quiet ones.

    Returns:
        Columns: the features (``features.FEATURE_NAMES``), ``candle_timestamp`` (UTC),
        ``probability_up``, ``signal``, ``model_tag``, ``horizon_bars``, ``logged_at``.

    Raises:
        PredictionLogError: no files, or no prediction left after the filters.
    """
    records = []
    skipped = 0
    for file in log_files(path):
        with file.open(encoding="utf8") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:  # e.g. a line cut short by a crash
                    skipped += 1
                    continue
                if isinstance(record, dict) and CANDLE_TIMESTAMP in record:
                    records.append(record)
                else:
                    skipped += 1
    if skipped:
        logger.warning("%s: skipped %d unreadable line(s)", path, skipped)
    if not records:
        raise PredictionLogError(f"{path}: no predictions in the log")
    frame = pd.DataFrame.from_records(records)
    missing = [c for c in (*FEATURE_NAMES, *OUTPUT_COLUMNS) if c not in frame.columns]
    if missing:
        raise PredictionLogError(f"{path}: log records lack {missing} (another feature set?)")
    frame[CANDLE_TIMESTAMP] = pd.to_datetime(frame[CANDLE_TIMESTAMP], utc=True)
    frame[LOGGED_AT] = pd.to_datetime(frame["timestamp"])
    if model_tag is not None:
        frame = frame[frame["model_tag"] == model_tag]
    if since is not None:
        frame = frame[frame[CANDLE_TIMESTAMP] >= since]
    if until is not None:
        frame = frame[frame[CANDLE_TIMESTAMP] <= until]
    frame = frame.sort_values([CANDLE_TIMESTAMP, LOGGED_AT], kind="stable")
    if not keep_duplicates:
        frame = frame.drop_duplicates(["model_tag", CANDLE_TIMESTAMP], keep="last")
    if frame.empty:
        raise PredictionLogError(f"{path}: no predictions left after the filters")
    columns = [*FEATURE_NAMES, CANDLE_TIMESTAMP, *OUTPUT_COLUMNS, LOGGED_AT]
    return frame[columns].reset_index(drop=True)


def latest_model_tag(predictions: pd.DataFrame) -> str:
    """The model that answered the most recently logged prediction."""
    return str(predictions.sort_values(LOGGED_AT)["model_tag"].iloc[-1])


def utc_timestamp(text: str) -> pd.Timestamp:
    """A CLI date/time argument as a UTC timestamp (naive means UTC)."""
    ts = pd.Timestamp(text)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
