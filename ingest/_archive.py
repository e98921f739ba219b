"""Extract from Binance's public market-data archive (https://data.binance.vision).

Spot kline files, as Binance publishes them:

- monthly ``data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip`` and daily
  ``data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01-15.zip``, each a ZIP holding one CSV
  of 12-column klines (with or without a header row), and a ``<file>.CHECKSUM`` beside it
  (``<sha256 hex>  <file name>``), verified when present;
- open and close times in epoch milliseconds up to 2024 and in microseconds from 2025-01-01:
  the unit is detected per file, and a file mixing the two is refused.

A file only holds its own, finished period, so a row outside the period named by the file is
refused (that also keeps forming candles out).
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.candles import CandleValidationError
from ingest._http import RetryingGetter
from ingest._klines import (
    KLINE_FIELDS,
    KlineBatch,
    epoch_to_utc,
    klines_batch,
    timestamp_unit,
)

CHECKSUM_SUFFIX = ".CHECKSUM"
RECENT_MONTHS_DAILY = 2
"""For the newest months, whose monthly file may not be published yet, daily files are tried."""


class ArchiveError(ValueError):
    """An archive file is unusable: checksum mismatch, not a ZIP, not one CSV of klines."""


@dataclass(frozen=True)
class ArchiveFile:
    """One archive file: its name, where it is (path or URL) and the period it covers."""

    name: str
    location: str
    start: pd.Timestamp
    end: pd.Timestamp  # exclusive

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://"))


def _name_pattern(symbol: str, interval: str) -> re.Pattern[str]:
    return re.compile(
        rf"^{re.escape(symbol)}-{re.escape(interval)}-(\d{{4}})-(\d{{2}})(?:-(\d{{2}}))?\.zip$"
    )


def archive_period(name: str, symbol: str, interval: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)`` of the month or day a file name covers.

    Raises:
        ArchiveError: the name is not ``SYMBOL-INTERVAL-YYYY-MM[-DD].zip``.
    """
    match = _name_pattern(symbol, interval).match(name)
    if match is None:
        raise ArchiveError(f"{name}: not a {symbol}-{interval}-YYYY-MM[-DD].zip archive name")
    year, month, day = match.groups()
    if day is None:
        start = pd.Timestamp(f"{year}-{month}-01", tz="UTC")
        return start, start + pd.offsets.MonthBegin(1)
    start = pd.Timestamp(f"{year}-{month}-{day}", tz="UTC")
    return start, start + pd.Timedelta(days=1)


def local_files(folder: Path, symbol: str, interval: str, since: pd.Timestamp) -> list[ArchiveFile]:
    """The folder's archive files (searched recursively) covering anything from ``since`` on,
    oldest period first (a month before the days inside it)."""
    if not folder.is_dir():
        raise ArchiveError(f"{folder}: archive folder does not exist")
    pattern = _name_pattern(symbol, interval)
    found = []
    for path in sorted(folder.rglob("*.zip")):
        if pattern.match(path.name):
            start, end = archive_period(path.name, symbol, interval)
            if end > since:
                found.append(ArchiveFile(path.name, str(path), start, end))
    return sorted(found, key=lambda f: (f.start, -(f.end - f.start).value, f.name))


def remote_files(
    base_url: str, symbol: str, interval: str, since: pd.Timestamp, until: pd.Timestamp
) -> list[ArchiveFile]:
    """Candidate files under an archive root URL (``https://data.binance.vision``) for
    ``[since, until)``: the monthly file of every month, plus the daily files of the newest
    months, whose monthly file may not be published yet."""
    root = base_url.rstrip("/")
    files = []
    month = since.tz_convert("UTC").normalize().replace(day=1)
    last_month = until.tz_convert("UTC").normalize().replace(day=1)
    recent = last_month - pd.offsets.MonthBegin(RECENT_MONTHS_DAILY - 1)
    while month <= last_month:
        stamp = month.strftime("%Y-%m")
        name = f"{symbol}-{interval}-{stamp}.zip"
        url = f"{root}/data/spot/monthly/klines/{symbol}/{interval}/{name}"
        if month < last_month:
            files.append(ArchiveFile(name, url, month, month + pd.offsets.MonthBegin(1)))
        if month >= recent:
            day = max(month, since.tz_convert("UTC").normalize())
            while day < min(month + pd.offsets.MonthBegin(1), until.normalize()):
                daily = f"{symbol}-{interval}-{day.strftime('%Y-%m-%d')}.zip"
                url = f"{root}/data/spot/daily/klines/{symbol}/{interval}/{daily}"
                files.append(ArchiveFile(daily, url, day, day + pd.Timedelta(days=1)))
                day += pd.Timedelta(days=1)
        month += pd.offsets.MonthBegin(1)
    return files


def verify_checksum(name: str, data: bytes, checksum_text: str) -> None:
    """Check ``data`` against a ``.CHECKSUM`` file's ``<sha256 hex>  <file name>``.

    Raises:
        ArchiveError: malformed checksum file, other file name, or a different sha256.
    """
    parts = checksum_text.split()
    if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
        raise ArchiveError(f"{name}{CHECKSUM_SUFFIX}: expected '<sha256 hex>  <file name>'")
    expected, named = parts[0].lower(), parts[1]
    if named != name:
        raise ArchiveError(f"{name}{CHECKSUM_SUFFIX}: names {named!r}, not {name!r}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ArchiveError(
            f"{name}: sha256 {actual} does not match its {CHECKSUM_SUFFIX} ({expected})"
        )


def parse_archive(
    name: str, data: bytes, *, symbol: str, interval: str, checksum_text: str | None = None
) -> KlineBatch:
    """Verify (when a checksum is given) and parse one archive ZIP into a :class:`KlineBatch`.

    Raises:
        ArchiveError: bad checksum, not a ZIP, not exactly one CSV inside.
        CandleValidationError: a row breaks a rule (named by file line).
    """
    if checksum_text is not None:
        verify_checksum(name, data, checksum_text)
    start, end = archive_period(name, symbol, interval)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
            if len(members) != 1:
                raise ArchiveError(f"{name}: expected one CSV inside, found {members}")
            text = archive.read(members[0])
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{name}: not a ZIP file ({exc})") from None
    raw = pd.read_csv(io.BytesIO(text), header=None, dtype=str, keep_default_na=False)
    first_line = 1
    if len(raw) and not str(raw.iloc[0, 0]).strip().isdigit():
        raw = raw.iloc[1:].reset_index(drop=True)  # header row
        first_line = 2
    if raw.shape[1] != len(KLINE_FIELDS):
        raise ArchiveError(
            f"{name}: a kline row has {len(KLINE_FIELDS)} columns, got {raw.shape[1]}"
        )
    names = [f"{name} line {first_line + i}" for i in range(len(raw))]
    if raw.empty:
        raise CandleValidationError(f"{name}: no klines")
    times = {}
    for position, what in ((0, "open"), (6, "close")):
        values = pd.to_numeric(raw.iloc[:, position], errors="coerce")
        if values.isna().any():
            i = int(np.argmax(values.isna().to_numpy()))
            raise CandleValidationError(
                f"{names[i]}: {what} time must be an integer, got {raw.iloc[i, position]!r}"
            )
        times[what] = (
            values.to_numpy(dtype="int64"),
            timestamp_unit(values.to_numpy(), names, name),
        )
    if times["open"][1] != times["close"][1]:
        raise CandleValidationError(
            f"{name}: open times are in {times['open'][1]} but close times in "
            f"{times['close'][1]}; refusing the file"
        )
    unit = times["open"][1]
    batch = klines_batch(raw, source=name, row_names=names, unit=unit)
    opened = epoch_to_utc(times["open"][0], unit)
    closed = batch.frame["close_time"]
    outside = ((opened < start) | (opened >= end) | (closed >= end)).to_numpy()
    if outside.any():
        i = int(np.argmax(outside))
        raise CandleValidationError(
            f"{names[i]}: candle {opened[i].isoformat()} (closing {closed.iloc[i].isoformat()}) "
            f"lies outside the file's period [{start.isoformat()}, {end.isoformat()})"
        )
    return batch


def read_files(
    files: list[ArchiveFile],
    *,
    symbol: str,
    interval: str,
    getter: RetryingGetter,
    notes: list[str],
) -> Iterator[KlineBatch]:
    """Read and parse each file (local or URL), verifying its ``.CHECKSUM`` when present.

    A URL that answers 404 is skipped (not published); what was skipped or had no checksum is
    appended to ``notes``.
    """
    unpublished: list[str] = []
    unchecked: list[str] = []
    for item in files:
        if item.is_url:
            data = getter.get_bytes(item.location, missing_ok=True)
            if data is None:
                unpublished.append(item.name)
                continue
            checksum = getter.get_bytes(item.location + CHECKSUM_SUFFIX, missing_ok=True)
            checksum_text = None if checksum is None else checksum.decode("ascii", "replace")
        else:
            path = Path(item.location)
            data = path.read_bytes()
            sidecar = path.with_name(path.name + CHECKSUM_SUFFIX)
            checksum_text = sidecar.read_text("ascii") if sidecar.is_file() else None
        if checksum_text is None:
            unchecked.append(item.name)
        yield parse_archive(
            item.name, data, symbol=symbol, interval=interval, checksum_text=checksum_text
        )
    if unpublished:
        notes.append(f"{len(unpublished)} archive file(s) not published: {_short(unpublished)}")
    if unchecked:
        notes.append(
            f"{len(unchecked)} archive file(s) without {CHECKSUM_SUFFIX}: {_short(unchecked)}"
        )


def _short(names: list[str], keep: int = 3) -> str:
    shown = ", ".join(names[:keep])
    return shown + (f" ... (+{len(names) - keep})" if len(names) > keep else "")
