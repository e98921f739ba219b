"""The monitoring CLIs' ClickHouse source (``--source clickhouse://HOST:PORT/DATABASE``): the
``predictions`` table the service fills (:mod:`serving.clickhouse`, schema in
:mod:`stores.clickhouse`) read back as the prediction log is, and the ``candles`` table.

The same selection as :func:`monitoring.prediction_log.read_predictions`, in SQL: one model,
candles in ``[since, until]``, and by default one answer per candle (the last served; ties by
window index), every row counted once (``FINAL``). What is computed where (all of it runs on
ClickHouse 18.16 and current releases):

- Data drift, PSI: ClickHouse counts the rows of each reference bin per feature and candle day
  (comparisons with the reference's edges, written into the query as exact float literals);
  Python sums the days of each window and computes PSI from the counts
  (:func:`monitoring.drift_stats.psi_from_counts`). Nothing row by row leaves the server.
- Data drift, KS: the statistic needs every value (its empirical CDF against the reference's
  quantile grid), so for each feature only that column (and its day) is pulled, one feature at
  a time.
- Outcomes: rolling ROC-AUC over the latest N resolved predictions needs each prediction's
  probability and label (no ``arrayAUC`` or window functions on 18.16), so the narrow columns
  ``candle_timestamp, probability_up, signal, horizon_bars`` (no features) are pulled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from cli import existing_file
from features import FEATURE_NAMES
from monitoring.drift_stats import ks_statistic, psi_from_counts, psi_level
from monitoring.prediction_log import CANDLE_TIMESTAMP, LOGGED_AT, PredictionLogError
from stores.clickhouse import PREDICTIONS, load_candles, parse_dsn, read_candles, table

SCHEME = "clickhouse://"
SECONDS_PER_DAY = 86_400


def is_clickhouse_url(source: object) -> bool:
    return isinstance(source, str) and source.startswith(SCHEME)


@dataclass(frozen=True)
class Selection:
    """Which predictions: one model's, candles in ``[since, until]``, deduplicated or not."""

    model_tag: str
    since: pd.Timestamp | None = None
    until: pd.Timestamp | None = None
    keep_duplicates: bool = False


@dataclass(frozen=True)
class DriftTables:
    """What the drift report prints and writes, as from the JSON lines."""

    overall: pd.DataFrame
    daily: pd.DataFrame
    rows: int
    first: pd.Timestamp
    last: pd.Timestamp


class ClickHouseSource:
    """A ClickHouse database written by the service."""

    def __init__(self, url: str):
        try:
            self.dsn = parse_dsn(url)
        except ValueError as exc:
            raise PredictionLogError(f"--source: {exc}") from None
        self.client = self.dsn.client()
        # the driver logs each failed connection attempt with a traceback; the CLIs report the
        # error themselves, in one line
        logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)
        self.predictions = table(self.dsn.database, PREDICTIONS)

    def _query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        try:
            return self.client.execute(sql, params or {})
        except Exception as exc:  # unreachable, no such table, ...: one line for the CLI
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise PredictionLogError(f"{self.dsn}: {message}") from exc

    def latest_model_tag(self) -> str:
        """The model that answered the most recently served prediction."""
        ((count, tag),) = self._query(
            f"SELECT count(), argMax(model_tag, served_at_us) FROM {self.predictions}"
        )
        if not count:
            raise PredictionLogError(f"{self.dsn}: no predictions in {PREDICTIONS}")
        return str(tag)

    def _selected(self, selection: Selection, columns: Sequence[str]) -> tuple[str, dict]:
        """SQL of the selected predictions: ``candle_s`` (Unix seconds), ``day`` (days since
        the epoch, UTC), ``served_us`` and ``c<i>`` for each of ``columns``."""
        where = ["model_tag = %(model_tag)s"]
        params: dict[str, Any] = {"model_tag": selection.model_tag}
        for name, bound, operator in (
            ("since", selection.since, ">="),
            ("until", selection.until, "<="),
        ):
            if bound is not None:
                where.append(f"toUInt32(candle_timestamp) {operator} %({name})s")
                params[name] = int(pd.Timestamp(bound).timestamp())
        if selection.keep_duplicates:
            picked = [f"`{c}` AS c{i}" for i, c in enumerate(columns)]
            served, group = "served_at_us", ""
        else:  # the last answer per candle, as the JSON-lines reader keeps
            last = "(served_at_us, window_index)"
            picked = [f"argMax(`{c}`, {last}) AS c{i}" for i, c in enumerate(columns)]
            served, group = "max(served_at_us)", " GROUP BY candle_timestamp"
        fields = ", ".join(
            [
                "toUInt32(candle_timestamp) AS candle_s",
                f"intDiv(toUInt32(candle_timestamp), {SECONDS_PER_DAY}) AS day",
                f"{served} AS served_us",
                *picked,
            ]
        )
        sql = f"SELECT {fields} FROM {self.predictions} FINAL WHERE {' AND '.join(where)}{group}"
        return sql, params

    # ---------------------------------------------------------------- drift

    def drift_tables(
        self,
        selection: Selection,
        profile: Mapping[str, Any],
        *,
        window_days: int,
        min_rows: int,
    ) -> DriftTables:
        """:func:`monitoring.drift_report.overall_drift` and ``daily_drift`` of the selection."""
        if window_days < 1 or min_rows < 1:
            raise ValueError("window_days and min_rows must be >= 1")
        sql, params = self._selected(selection, [])
        ((rows, first, last),) = self._query(
            f"SELECT count(), min(candle_s), max(candle_s) FROM ({sql})", params
        )
        if not rows:
            raise PredictionLogError(f"{self.dsn}: no predictions left after the filters")
        days, counts = self._bin_counts(selection, profile)
        per_day_rows = counts[:, 0, :].sum(axis=1)
        overall, daily = [], []
        for j, name in enumerate(FEATURE_NAMES):
            reference = profile["features"][name]
            bins = len(reference["edges"]) + 1
            value_days, values = self._column(selection, name)
            value = psi_from_counts(reference, counts[:, j, :bins].sum(axis=0))
            overall.append(
                {
                    "feature": name,
                    "rows": rows,
                    "psi": value,
                    "ks": ks_statistic(reference, values),
                    "level": psi_level(value),
                }
            )
            for d, day in enumerate(days):
                inside = (days > day - window_days) & (days <= day)
                n = int(per_day_rows[inside].sum())
                if n >= min_rows:
                    value = psi_from_counts(reference, counts[inside, j, :bins].sum(axis=0))
                    in_window = (value_days > day - window_days) & (value_days <= day)
                    ks, level = ks_statistic(reference, values[in_window]), psi_level(value)
                else:
                    value, ks, level = np.nan, np.nan, "too few rows"
                daily.append(
                    {
                        "day": _date(day),
                        "feature": name,
                        "rows": n,
                        "psi": value,
                        "ks": ks,
                        "level": level,
                        "_order": d,
                    }
                )
        overall_frame = pd.DataFrame(overall).sort_values("psi", ascending=False, kind="stable")
        daily_frame = pd.DataFrame(daily).sort_values(["_order"], kind="stable")
        return DriftTables(
            overall=overall_frame.reset_index(drop=True),
            daily=daily_frame.drop(columns="_order").reset_index(drop=True),
            rows=int(rows),
            first=pd.Timestamp(first, unit="s", tz="UTC"),
            last=pd.Timestamp(last, unit="s", tz="UTC"),
        )

    def _bin_counts(
        self, selection: Selection, profile: Mapping[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Days present (sorted) and counts ``[day, feature, bin]`` of the selected rows."""
        sql, params = self._selected(selection, FEATURE_NAMES)
        pairs = []
        for j, name in enumerate(FEATURE_NAMES):
            # the number of edges <= the value (numpy's searchsorted side="right"), as a sum of
            # comparisons: 18.16 cannot run several lambdas over columns in one expression
            edges = profile["features"][name]["edges"]
            terms = " + ".join(f"(c{j} >= {float(e)!r})" for e in edges) or "0"
            pairs.append(f"({j}, toUInt32({terms}))")
        rows = self._query(
            "SELECT day, tupleElement(fb, 1) AS feature, tupleElement(fb, 2) AS bin, count() "
            f"FROM (SELECT day, arrayJoin([{', '.join(pairs)}]) AS fb FROM ({sql})) "
            "GROUP BY day, feature, bin",
            params,
        )
        days = np.array(sorted({r[0] for r in rows}), dtype=np.int64)
        width = 1 + max(len(profile["features"][n]["edges"]) for n in FEATURE_NAMES)
        counts = np.zeros((len(days), len(FEATURE_NAMES), width), dtype=np.int64)
        index = {int(day): i for i, day in enumerate(days)}
        for day, feature, bin_, n in rows:
            counts[index[day], feature, bin_] = n
        return days, counts

    def _column(self, selection: Selection, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Days and values of one feature over the selection (for KS: it needs every value)."""
        sql, params = self._selected(selection, [name])
        rows = self._query(f"SELECT day, c0 FROM ({sql})", params)
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty(0)
        days, values = zip(*rows, strict=True)
        return np.asarray(days, dtype=np.int64), np.asarray(values, dtype=np.float64)

    # ---------------------------------------------------------------- outcomes

    def predictions_frame(self, selection: Selection) -> pd.DataFrame:
        """The selected predictions without features, as ``read_predictions`` gives them:
        ``candle_timestamp`` (UTC), ``probability_up, signal, model_tag, horizon_bars``,
        ``logged_at`` (when served), oldest candle first."""
        columns = ["probability_up", "signal", "horizon_bars"]
        sql, params = self._selected(selection, columns)
        rows = self._query(f"SELECT candle_s, served_us, c0, c1, c2 FROM ({sql})", params)
        if not rows:
            raise PredictionLogError(f"{self.dsn}: no predictions left after the filters")
        frame = pd.DataFrame(rows, columns=["candle_s", "served_us", *columns])
        frame[CANDLE_TIMESTAMP] = pd.to_datetime(frame["candle_s"], unit="s", utc=True)
        frame[LOGGED_AT] = pd.to_datetime(frame["served_us"], unit="us", utc=True)
        frame["model_tag"] = selection.model_tag
        frame["horizon_bars"] = frame["horizon_bars"].astype(np.int64)
        frame = frame.sort_values([CANDLE_TIMESTAMP, LOGGED_AT], kind="stable")
        ordered = [CANDLE_TIMESTAMP, "probability_up", "signal", "model_tag", "horizon_bars"]
        return frame[[*ordered, LOGGED_AT]].reset_index(drop=True)

    def candles(self) -> pd.DataFrame:
        """The ``candles`` table (``timestamp`` UTC open time + OHLCV), oldest first."""
        try:
            frame = read_candles(self.client, self.dsn.database)
        except Exception as exc:
            raise PredictionLogError(f"{self.dsn}: candles: {str(exc).splitlines()[0]}") from exc
        if frame.empty:
            raise PredictionLogError(f"{self.dsn}: the candles table is empty")
        return frame


def _date(day: int) -> Any:
    return pd.Timestamp(int(day) * SECONDS_PER_DAY, unit="s").date()


@click.command(
    "load-candles",
    help="Load candles (a CSV/Parquet file, e.g. the dataset of `btcusdt data update`; default: "
    "the bundled BTCUSDT 1h candles) into the candles table of a ClickHouse database, for "
    "`btcusdt outcomes --data clickhouse://...`. Candles loaded again replace the old rows.",
)
@click.option(
    "--to", "url", required=True, help="clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE"
)
@click.option("--data", type=existing_file, help="candle file (default: the bundled candles)")
def load_candles_command(url: str, data: Path | None) -> int:
    """``btcusdt load-candles``."""
    from training.prepare import load_data

    try:
        dsn = parse_dsn(url)
        candles = load_data(data).frame
        rows = load_candles(dsn.client(), dsn.database, candles)
    except (ValueError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except Exception as exc:  # ClickHouse unreachable or refusing: one line
        click.echo(f"error: {dsn}: {str(exc).strip().splitlines()[0]}", err=True)
        return 2
    first, last = candles["timestamp"].iloc[[0, -1]]
    click.echo(f"loaded {rows} candles ({first} .. {last}) into {dsn}, table candles")
    return 0
