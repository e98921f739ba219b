"""Load: the on-disk candle dataset, a Parquet file with a provenance JSON beside it.

- Parquet columns ``timestamp`` (UTC open time, microseconds), ``open, high, low, close,
  volume`` (float64), oldest first, closed candles only (the contract's candle dataset).
- ``<name>.provenance.json`` beside it: source, symbol, interval, fetched-at, row count,
  first/last candle, gaps, the Parquet's sha256 and the list of updates that added rows.
- Writes are deterministic (same candles, same bytes) and atomic: each file is written to a
  temporary name in the same folder, fsynced and renamed over the old one, so a crash or a
  kill leaves the previous dataset whole. Updates take an exclusive lock beside the dataset.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.candles import OHLCV_COLUMNS, TIMESTAMP_COLUMN, Gap, validate_candles

PROVENANCE_SUFFIX = ".provenance.json"


class DatasetBusy(RuntimeError):
    """Another update of the same dataset holds its lock."""


SCHEMA = pa.schema(
    [pa.field(TIMESTAMP_COLUMN, pa.timestamp("us", tz="UTC"), nullable=False)]
    + [pa.field(c, pa.float64(), nullable=False) for c in OHLCV_COLUMNS]
)


def provenance_path(path: Path) -> Path:
    """``data/live/BTCUSDT-1h.parquet`` -> ``data/live/BTCUSDT-1h.provenance.json``."""
    return path.with_name(path.stem + PROVENANCE_SUFFIX)


def _scratch(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_dataset(path: Path, interval: pd.Timedelta) -> pd.DataFrame:
    """The stored candles, checked against the candle rules (an empty frame if none yet)."""
    if not path.exists():
        return pd.DataFrame(
            {
                TIMESTAMP_COLUMN: pd.Series([], dtype="datetime64[us, UTC]"),
                **{c: pd.Series([], dtype="float64") for c in OHLCV_COLUMNS},
            }
        )
    frame = pd.read_parquet(path)
    frame[TIMESTAMP_COLUMN] = frame[TIMESTAMP_COLUMN].dt.as_unit("us")
    return validate_candles(frame, interval=interval, allow_gaps=True, row_label=f"{path.name} row")


def read_provenance(path: Path) -> dict[str, Any] | None:
    """The provenance beside the dataset at ``path``, or None if there is none."""
    target = provenance_path(path)
    if not target.exists():
        return None
    return json.loads(target.read_text())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(target: Path, write: Any) -> None:
    scratch = _scratch(target)
    try:
        write(scratch)
        with scratch.open("rb+") as fh:
            os.fsync(fh.fileno())
        scratch.replace(target)
    finally:
        scratch.unlink(missing_ok=True)
    _fsync_dir(target.parent)


def parquet_table(frame: pd.DataFrame) -> pa.Table:
    """The candles as an Arrow table with the dataset's fixed schema (no pandas metadata)."""
    timestamps = frame[TIMESTAMP_COLUMN].dt.tz_convert("UTC").dt.as_unit("us")
    arrays = [pa.array(timestamps, type=SCHEMA.field(TIMESTAMP_COLUMN).type)]
    arrays += [pa.array(frame[c].to_numpy(dtype="float64"), pa.float64()) for c in OHLCV_COLUMNS]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def write_dataset(path: Path, frame: pd.DataFrame, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write the candles and their provenance atomically; returns the provenance written
    (``rows``, ``first_candle``, ``last_candle`` and ``sha256`` filled in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = parquet_table(frame)
    _write_atomically(
        path,
        lambda scratch: pq.write_table(
            table, scratch, compression="zstd", row_group_size=1 << 20, write_statistics=True
        ),
    )
    return write_provenance(path, frame, provenance)


def write_provenance(path: Path, frame: pd.DataFrame, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write ``provenance`` (completed from the dataset file itself) beside ``path``."""
    full = {
        **provenance,
        "rows": len(frame),
        "first_candle": _iso(frame[TIMESTAMP_COLUMN].iloc[0]) if len(frame) else None,
        "last_candle": _iso(frame[TIMESTAMP_COLUMN].iloc[-1]) if len(frame) else None,
        "columns": [TIMESTAMP_COLUMN, *OHLCV_COLUMNS],
        "sha256": file_sha256(path),
    }
    text = json.dumps(full, indent=2, sort_keys=True) + "\n"
    _write_atomically(provenance_path(path), lambda scratch: scratch.write_text(text))
    return full


def gap_record(gap: Gap) -> dict[str, Any]:
    return {"after": _iso(gap.after), "before": _iso(gap.before), "missing_bars": gap.missing_bars}


def _iso(moment: pd.Timestamp) -> str:
    return pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def update_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for updating the dataset at ``path``; removes the temporary files
    a killed run may have left (``.<name>.<pid>.tmp``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetBusy(f"{path}: another update is running (lock {lock})") from None
        try:
            for name in (path.name, provenance_path(path).name):
                for stale in path.parent.glob(f".{name}.*.tmp"):
                    stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
