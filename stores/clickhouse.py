"""ClickHouse: the ``predictions`` and ``candles`` tables, their schema version, and the DSN.

The SQL here runs on ClickHouse 18.16 (Debian's ``clickhouse-server``, the oldest supported)
and on current releases (>= 23): no ``DateTime64``, no table comments, no window functions, no
``LowCardinality``. Times are stored as ``DateTime`` (seconds, written and read as Unix
seconds, so the server's time zone never matters) and the answer time as microseconds
(``served_at_us UInt64``).

Schema version :data:`SCHEMA_VERSION` (table ``schema_version``):

``predictions`` (``ReplacingMergeTree``, partitioned by month of ``candle_timestamp``), one row
per answered window:
    ``model_tag String``, ``candle_timestamp DateTime`` (open time of the window's last candle,
    UTC), ``request_id String``, ``window_index UInt32`` (the window's place in a batch),
    ``served_at_us UInt64`` (when the service answered), ``probability_up Float64``,
    ``signal String``, ``horizon_bars UInt16``, then one ``Float64`` column per contract
    feature (``features.FEATURE_NAMES``; a model with new features adds its columns, older
    rows read them as NaN).

    The sorting key (``model_tag, candle_timestamp, request_id, window_index,
    served_at_us``) is the row's identity: a batch sent twice (a retry after a lost
    acknowledgement) holds the same keys, and the engine keeps one row per key. Merges run
    in the background, so queries read ``FINAL`` (exactly one row per key at once).
    ``served_at_us`` is part of the key so that two answers under one client-chosen request id
    stay two rows.

``candles`` (``ReplacingMergeTree`` by ``timestamp``): ``timestamp DateTime`` (open time,
UTC), ``open, high, low, close, volume Float64``; loading the same candles again replaces them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd

SCHEMA_VERSION = 1
DEFAULT_PORT = 9000
DSN_FORMAT = "clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE[?secure=true]"
PREDICTIONS = "predictions"
CANDLES = "candles"
KEY_COLUMNS = ("model_tag", "candle_timestamp", "request_id", "window_index", "served_at_us")
PREDICTION_COLUMNS: dict[str, str] = {
    "model_tag": "String",
    "candle_timestamp": "DateTime",
    "request_id": "String",
    "window_index": "UInt32",
    "served_at_us": "UInt64",
    "probability_up": "Float64",
    "signal": "String",
    "horizon_bars": "UInt16",
}
"""Every column of ``predictions`` but the features, with its type."""
CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class ClickHouseSchemaError(RuntimeError):
    """The database holds objects this code cannot use (a newer schema, a changed column)."""


@dataclass(frozen=True)
class ClickHouseDsn:
    """Where the ClickHouse database is (native protocol)."""

    host: str
    port: int
    database: str
    user: str = "default"
    password: str = ""
    secure: bool = False

    def client(self, **settings: Any) -> Any:
        """A ``clickhouse_driver.Client`` (it connects on first use)."""
        from clickhouse_driver import Client

        return Client(
            host=self.host,
            port=self.port,
            database="default",  # the database may not exist yet; every query names it
            user=self.user,
            password=self.password,
            secure=self.secure,
            connect_timeout=5,
            send_receive_timeout=30,
            settings=settings or None,
        )

    def __str__(self) -> str:
        """The DSN without its password (safe to log)."""
        user = f"{self.user}@" if self.user != "default" or self.password else ""
        query = "?secure=true" if self.secure else ""
        return f"clickhouse://{user}{self.host}:{self.port}/{self.database}{query}"


def parse_dsn(text: str) -> ClickHouseDsn:
    """``clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE[?secure=true]`` (port 9000 by
    default; user and password URL-encoded).

    Raises:
        ValueError: naming what is wrong (the scheme, host, port, database or an option).
    """
    parts = urlsplit(text.strip())
    if parts.scheme != "clickhouse":
        raise ValueError(f"expected {DSN_FORMAT}, got scheme {parts.scheme!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"expected {DSN_FORMAT}: the port is not a number in 1-65535") from exc
    if not parts.hostname:
        raise ValueError(f"expected {DSN_FORMAT}: no host")
    database = parts.path.removeprefix("/")
    if not _IDENTIFIER.match(database):
        raise ValueError(
            f"expected {DSN_FORMAT}: the database must be a name of letters, digits and "
            f"underscores (not starting with a digit), got {database!r}"
        )
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(options) - {"secure"})
    if unknown or parts.fragment:
        raise ValueError(f"expected {DSN_FORMAT}: unknown option(s) {unknown or [parts.fragment]}")
    secure_text = options.get("secure", ["false"])[-1].lower()
    if secure_text not in ("true", "false", "1", "0"):
        raise ValueError(f"expected {DSN_FORMAT}: secure must be true or false")
    return ClickHouseDsn(
        host=parts.hostname,
        port=port,
        database=database,
        user=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        secure=secure_text in ("true", "1"),
    )


def _quote(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain identifier")
    return f"`{name}`"


def table(database: str, name: str) -> str:
    """``database.name``, both checked as plain identifiers."""
    return f"{_quote(database)}.{_quote(name)}"


def predictions_ddl(database: str, feature_names: Sequence[str]) -> str:
    columns = [*PREDICTION_COLUMNS.items(), *((name, "Float64") for name in feature_names)]
    body = ",\n    ".join(f"{_quote(name)} {kind}" for name, kind in columns)
    key = ", ".join(KEY_COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS {table(database, PREDICTIONS)} (\n    {body}\n)\n"
        "ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(candle_timestamp)\n"
        f"ORDER BY ({key})"
    )


def candles_ddl(database: str) -> str:
    body = ", ".join(f"{c} Float64" for c in CANDLE_COLUMNS[1:])
    return (
        f"CREATE TABLE IF NOT EXISTS {table(database, CANDLES)} (timestamp DateTime, {body}) "
        "ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY timestamp"
    )


def ensure_schema(client: Any, database: str, feature_names: Sequence[str]) -> None:
    """Create the database, ``schema_version``, ``predictions`` and ``candles`` if missing, and
    add the columns of features the table lacks (idempotent; safe to run from every worker).

    Raises:
        ClickHouseSchemaError: the database was written by a newer schema version, or a
            column has another type than this version's.
    """
    client.execute(f"CREATE DATABASE IF NOT EXISTS {_quote(database)}")
    versions = table(database, "schema_version")
    client.execute(
        f"CREATE TABLE IF NOT EXISTS {versions} (version UInt32, applied_at DateTime) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    ((found,),) = client.execute(f"SELECT max(version) FROM {versions}")
    if found > SCHEMA_VERSION:
        raise ClickHouseSchemaError(
            f"{database}: schema version {found} is newer than this service's "
            f"{SCHEMA_VERSION}; upgrade the service"
        )
    client.execute(predictions_ddl(database, feature_names))
    client.execute(candles_ddl(database))
    existing = dict(
        client.execute(
            "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
            {"db": database, "t": PREDICTIONS},
        )
    )
    wanted = {**PREDICTION_COLUMNS, **dict.fromkeys(feature_names, "Float64")}
    wrong = {n: existing[n] for n, kind in wanted.items() if n in existing and existing[n] != kind}
    if wrong:
        raise ClickHouseSchemaError(
            f"{database}.{PREDICTIONS}: columns {wrong} differ from schema version "
            f"{SCHEMA_VERSION} ({ {n: wanted[n] for n in wrong} })"
        )
    for name in feature_names:
        if name not in existing:
            try:
                client.execute(
                    f"ALTER TABLE {table(database, PREDICTIONS)} "
                    f"ADD COLUMN {_quote(name)} Float64 DEFAULT nan"
                )
            except Exception:  # another worker added it first
                if not _has_column(client, database, PREDICTIONS, name):
                    raise
    if found < SCHEMA_VERSION:
        client.execute(
            f"INSERT INTO {versions} (version, applied_at) VALUES",
            [(SCHEMA_VERSION, int(pd.Timestamp.now(tz="UTC").timestamp()))],
        )


def _has_column(client: Any, database: str, name: str, column: str) -> bool:
    rows = client.execute(
        "SELECT count() FROM system.columns "
        "WHERE database = %(db)s AND table = %(t)s AND name = %(c)s",
        {"db": database, "t": name, "c": column},
    )
    return bool(rows[0][0])


def insert_predictions(client: Any, database: str, columns: Mapping[str, Sequence[Any]]) -> int:
    """Insert rows given column-wise (names of ``predictions``; ``candle_timestamp`` as Unix
    seconds). Returns the number of rows."""
    names = list(columns)
    statement = (
        f"INSERT INTO {table(database, PREDICTIONS)} ({', '.join(map(_quote, names))}) VALUES"
    )
    rows = len(columns[names[0]])
    client.execute(statement, [list(columns[n]) for n in names], columnar=True)
    return rows


def load_candles(client: Any, database: str, candles: pd.DataFrame) -> int:
    """Insert (or replace) candles (``timestamp`` UTC open time + OHLCV) into ``candles``;
    creates the table if missing. Returns the number of rows sent."""
    client.execute(f"CREATE DATABASE IF NOT EXISTS {_quote(database)}")
    client.execute(candles_ddl(database))
    stamps = pd.DatetimeIndex(pd.to_datetime(candles["timestamp"], utc=True))
    columns = [stamps.as_unit("s").asi8.tolist()]  # Unix seconds on the wire
    columns += [candles[c].astype("float64").tolist() for c in CANDLE_COLUMNS[1:]]
    client.execute(
        f"INSERT INTO {table(database, CANDLES)} ({', '.join(CANDLE_COLUMNS)}) VALUES",
        columns,
        columnar=True,
    )
    return len(stamps)


def read_candles(client: Any, database: str) -> pd.DataFrame:
    """The ``candles`` table as a frame (``timestamp`` UTC, OHLCV), oldest first."""
    rows = client.execute(
        f"SELECT toUInt32(timestamp), {', '.join(CANDLE_COLUMNS[1:])} "
        f"FROM {table(database, CANDLES)} FINAL ORDER BY timestamp"
    )
    frame = pd.DataFrame(rows, columns=list(CANDLE_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"].astype("int64"), unit="s", utc=True)
    return frame.astype(dict.fromkeys(CANDLE_COLUMNS[1:], np.float64))
