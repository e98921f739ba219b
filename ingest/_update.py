"""One incremental update of a candle dataset: extract -> transform -> load.

Only candles after the last stored one are fetched. Everything is fetched and checked before
anything is written; a run that finds nothing new writes nothing (the files stay identical,
byte for byte).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from features.candles import TIMESTAMP_COLUMN, Gap, find_gaps, validate_candles
from ingest._archive import local_files, read_files, remote_files
from ingest._dataset import (
    file_sha256,
    gap_record,
    read_dataset,
    read_provenance,
    update_lock,
    write_dataset,
    write_provenance,
)
from ingest._http import RetryingGetter, RetryPolicy
from ingest._klines import KlineBatch, interval_timedelta
from ingest._rest import DEFAULT_BASE_URL, BinanceRest
from ingest._transform import NewCandles, new_candles

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")
DEFAULT_SINCE = pd.Timestamp("2017-08-17T00:00:00Z")
"""BTCUSDT's first day on Binance spot."""


class DatasetMismatch(ValueError):
    """The dataset at ``--out`` holds another symbol or interval than the one asked for."""


@dataclass(frozen=True)
class UpdateRequest:
    """What to fetch and where to store it."""

    out: Path
    symbol: str = "BTCUSDT"
    interval: str = "1h"
    since: pd.Timestamp = DEFAULT_SINCE
    base_url: str = DEFAULT_BASE_URL
    archive: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not SYMBOL_PATTERN.match(self.symbol):
            raise ValueError(f"symbol must be 2-20 upper-case letters/digits, got {self.symbol!r}")
        interval_timedelta(self.interval)  # raises on an unknown interval
        if self.since.tzinfo is None:
            raise ValueError("since must be timezone-aware (e.g. 2017-08-17T00:00:00Z)")

    @property
    def source(self) -> str:
        if self.archive is not None:
            return f"binance-archive {self.archive}"
        return f"binance-rest {self.base_url.rstrip('/')}/api/v3/klines"


@dataclass
class UpdateResult:
    """What an update did."""

    path: Path
    rows_added: int
    rows_total: int
    first_candle: pd.Timestamp | None
    last_candle: pd.Timestamp | None
    added_range: tuple[pd.Timestamp, pd.Timestamp] | None
    new_gaps: list[Gap]
    forming: list[pd.Timestamp]
    duplicates: int
    already_stored: int
    waited_s: float
    notes: list[str]
    changed: bool

    def summary(self) -> str:
        """The lines ``btcusdt data update`` prints."""

        def iso(moment: pd.Timestamp | None) -> str:
            return "-" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")

        added = (
            f" ({iso(self.added_range[0])} .. {iso(self.added_range[1])})"
            if self.added_range
            else ""
        )
        missing = sum(g.missing_bars for g in self.new_gaps)
        lines = [
            f"rows added: {self.rows_added}{added}",
            f"rows stored: {self.rows_total}",
            f"first candle: {iso(self.first_candle)}",
            f"last candle: {iso(self.last_candle)}",
            f"gaps in the new candles: {len(self.new_gaps)} ({missing} missing bars; "
            "reported, not filled)",
        ]
        lines += [
            f"  gap: {iso(g.after)} -> {iso(g.before)} ({g.missing_bars} missing)"
            for g in self.new_gaps[:10]
        ]
        if self.forming:
            lines.append(
                f"not stored: {len(self.forming)} candle(s) still forming "
                f"(opened {', '.join(iso(t) for t in self.forming)})"
            )
        if self.duplicates:
            lines.append(f"met twice with identical values, kept once: {self.duplicates}")
        if self.waited_s:
            lines.append(f"waited {self.waited_s:.1f} s in retries")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"file: {self.path}" + ("" if self.changed else " (unchanged)"))
        return "\n".join(lines)


def _batches(
    request: UpdateRequest, start: pd.Timestamp, *, progress: bool, notes: list[str]
) -> tuple[list[KlineBatch], pd.Timestamp | None, float]:
    """Extract: every page or file from ``start`` on, all in memory before any write."""
    getter = RetryingGetter(request.retry)
    try:
        if request.archive is not None:
            location = request.archive
            if location.startswith(("http://", "https://")):
                until = pd.Timestamp.now(tz="UTC")  # only which file names to try
                files = remote_files(location, request.symbol, request.interval, start, until)
            else:
                files = local_files(Path(location), request.symbol, request.interval, start)
            bar = tqdm(files, desc="archive files", unit="file", disable=not progress)
            batches = list(
                read_files(
                    list(bar),
                    symbol=request.symbol,
                    interval=request.interval,
                    getter=getter,
                    notes=notes,
                )
            )
            return batches, None, getter.waited_s
        rest = BinanceRest(request.base_url, getter=getter)
        exchange_time = rest.server_time()
        if start > exchange_time:
            return [], exchange_time, getter.waited_s
        total = rest.page_estimate(request.interval, start, exchange_time)
        with tqdm(total=total, desc="klines pages", unit="page", disable=not progress) as bar:
            batches = []
            for batch in rest.pages(
                request.symbol, request.interval, start=start, end=exchange_time
            ):
                batches.append(batch)
                bar.update(1)
        return batches, exchange_time, getter.waited_s
    finally:
        getter.close()


def _provenance(
    request: UpdateRequest,
    previous: dict[str, Any] | None,
    combined: pd.DataFrame,
    new: NewCandles,
    exchange_time: pd.Timestamp | None,
    interval: pd.Timedelta,
) -> dict[str, Any]:
    now = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    updates = list((previous or {}).get("updates", []))
    frame = new.frame
    updates.append(
        {
            "fetched_at": now,
            "source": request.source,
            "rows_added": len(frame),
            "first": frame[TIMESTAMP_COLUMN].iloc[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "last": frame[TIMESTAMP_COLUMN].iloc[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    gaps = find_gaps(combined[TIMESTAMP_COLUMN], interval)
    record: dict[str, Any] = {
        "source": request.source,
        "symbol": request.symbol,
        "interval": request.interval,
        "fetched_at": now,
        "gaps": [gap_record(g) for g in gaps],
        "missing_bars": sum(g.missing_bars for g in gaps),
        "updates": updates,
    }
    if exchange_time is not None:
        record["exchange_time"] = exchange_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return record


def _check_same_series(request: UpdateRequest, previous: dict[str, Any] | None) -> None:
    if previous is None:
        return
    held = (previous.get("symbol"), previous.get("interval"))
    if held != (request.symbol, request.interval):
        raise DatasetMismatch(
            f"{request.out} holds {held[0]} {held[1]} candles, not {request.symbol} "
            f"{request.interval}; choose another --out"
        )


def update_dataset(request: UpdateRequest, *, progress: bool = False) -> UpdateResult:
    """Fetch the closed candles after the dataset's last one, check them, append them.

    Raises:
        features.candles.CandleValidationError: bad data (row and rule named); nothing written.
        ingest.ArchiveError, DatasetMismatch, ValueError: bad input; nothing written.
        ingest.ExchangeError / ExchangeUnavailable: the exchange refused or stayed down.
    """
    interval = interval_timedelta(request.interval)
    notes: list[str] = []
    with update_lock(request.out):
        previous = read_provenance(request.out)
        _check_same_series(request, previous)
        stored = read_dataset(request.out, interval)
        since = request.since.tz_convert("UTC")
        start = max(since, stored[TIMESTAMP_COLUMN].iloc[-1] + interval) if len(stored) else since
        batches, exchange_time, waited = _batches(request, start, progress=progress, notes=notes)
        new = new_candles(batches, interval=interval, exchange_time=exchange_time, stored=stored)
        changed = len(new.frame) > 0
        if changed:
            combined = validate_candles(
                pd.concat([stored, new.frame], ignore_index=True),
                interval=interval,
                allow_gaps=True,
                row_label="dataset row",
            )
            provenance = _provenance(request, previous, combined, new, exchange_time, interval)
            write_dataset(request.out, combined, provenance)
        else:
            combined = stored
            recorded = None if previous is None else previous.get("sha256")
            if len(stored) and recorded != file_sha256(request.out):
                # A run killed between the two renames: the data is whole, its record is not.
                notes.append("the provenance did not describe the dataset: rewritten")
                repaired = {"source": "unknown", **(previous or {})}
                repaired |= {"symbol": request.symbol, "interval": request.interval}
                write_provenance(request.out, stored, repaired)
                changed = True
    times = combined[TIMESTAMP_COLUMN]
    added = new.frame[TIMESTAMP_COLUMN]
    return UpdateResult(
        path=request.out,
        rows_added=len(new.frame),
        rows_total=len(combined),
        first_candle=times.iloc[0] if len(times) else None,
        last_candle=times.iloc[-1] if len(times) else None,
        added_range=(added.iloc[0], added.iloc[-1]) if len(added) else None,
        new_gaps=new.gaps,
        forming=new.forming,
        duplicates=new.duplicates,
        already_stored=new.already_stored,
        waited_s=waited,
        notes=notes,
        changed=changed,
    )
