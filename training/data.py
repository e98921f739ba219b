"""Loading candles from files: the bundled Binance export and any user CSV/Parquet.

Every loader ends in :func:`features.candles.validate_candles`; dataset-specific cleaning is
explicit (each dropped row is listed in the :class:`LoadReport` with its reason) and gaps are
reported, never filled.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.candles import (
    BAR_INTERVAL,
    OHLCV_COLUMNS,
    TIMESTAMP_COLUMN,
    CandleValidationError,
    Gap,
    find_gaps,
    infer_interval,
    parse_timestamps,
    validate_candles,
)

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUNDLED_BTCUSDT = DATA_DIR / "Binance_BTCUSDT_1h.csv.gz"
BUNDLED_BTCUSDT_SHA256 = "5a4dcc2740c1489fcd6fdb91f3ce884ae1182ca1c81da432bb47a920da3b983d"
"""sha256 of the uncompressed CSV as shipped in cs-bitcoin-model 0.0.8 (see data/README.md)."""
BUNDLED_EURUSD = DATA_DIR / "FOREX_EURUSD_1H_ASK.csv.gz"
BUNDLED_EURUSD_SHA256 = "28398b7edff9f74860d35a6f3c263f08e15c55264316dc07737d459d8688d7aa"

# Rows of the Binance export known to be wrong, removed by timestamp with the reason.
_BINANCE_KNOWN_BAD_ROWS: dict[pd.Timestamp, str] = {
    pd.Timestamp("2017-08-17 04:00", tz="UTC"): (
        "bogus first row: open=high=16199.91 while the close and the next bars trade near 4300"
    ),
}


@dataclass
class LoadReport:
    """What a loader did to get from the file to validated candles."""

    source: str
    sha256: str
    rows_read: int
    rows_kept: int
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (timestamp, reason)
    gaps: list[Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interval: pd.Timedelta = BAR_INTERVAL

    @property
    def missing_bars(self) -> int:
        return sum(g.missing_bars for g in self.gaps)

    def summary(self) -> str:
        lines = [
            f"{self.source}: {self.rows_read} rows read, {self.rows_kept} kept, "
            f"{len(self.dropped)} dropped, {len(self.gaps)} gaps "
            f"({self.missing_bars} missing bars), bar interval {_interval_text(self.interval)}"
        ]
        lines += [f"  dropped {ts}: {why}" for ts, why in self.dropped]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _interval_text(interval: pd.Timedelta) -> str:
    seconds = int(interval.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass
class Candles:
    """Validated candles plus the report of how they were obtained."""

    frame: pd.DataFrame
    report: LoadReport

    @property
    def sha256(self) -> str:
        return self.report.sha256

    @property
    def interval(self) -> pd.Timedelta:
        """Spacing of the bars (1h for the bundled data; inferred for user files)."""
        return self.report.interval

    @property
    def interval_text(self) -> str:
        """The interval as ``1h``, ``15m``, ``1d``..."""
        return _interval_text(self.interval)


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, decompressing ``.gz`` so the hash names the data itself."""
    import gzip

    digest = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_bundled_btcusdt(path: Path = BUNDLED_BTCUSDT, *, verify_checksum: bool = True) -> Candles:
    """Load the bundled Binance BTC/USDT 1h export (CryptoDataDownload format), cleaned.

    The export's quirks and what is done about each:
    banner first line (skipped); newest row first (sorted); ``unix`` in ms for newer rows and
    in s for older ones (both read; ``unix`` is the source of truth, ``date`` is only
    cross-checked and disagreements are noted); one hour present twice, once from each
    format (the full-precision millisecond row is kept); a bogus first row (dropped by
    timestamp); the newest candle, written while its hour was still open (dropped); missing
    hours (reported as gaps); zero-volume forward-filled hours (kept, counted in the notes).
    """
    sha = file_sha256(path)
    if verify_checksum and sha != BUNDLED_BTCUSDT_SHA256:
        raise CandleValidationError(
            f"{path}: sha256 {sha} does not match the bundled dataset ({BUNDLED_BTCUSDT_SHA256})"
        )
    raw = pd.read_csv(path, skiprows=1)
    expected = {"unix", "date", "open", "high", "low", "close", "Volume BTC"}
    absent = sorted(expected - set(raw.columns))
    if absent:
        raise CandleValidationError(f"{path}: not a CryptoDataDownload export, missing {absent}")
    report = LoadReport(source=str(path), sha256=sha, rows_read=len(raw), rows_kept=0)

    unix = raw["unix"].astype("float64").to_numpy()
    epoch_ms = np.where(unix > 1e11, unix, unix * 1000.0).astype("int64")
    timestamps = pd.to_datetime(epoch_ms, unit="ms", utc=True)
    frame = pd.DataFrame(
        {
            TIMESTAMP_COLUMN: timestamps,
            "open": raw["open"],
            "high": raw["high"],
            "low": raw["low"],
            "close": raw["close"],
            "volume": raw["Volume BTC"],
            "_precise": unix > 1e11,
        }
    )
    date_col = pd.to_datetime(raw["date"], format="%Y-%m-%d %H:%M:%S", errors="coerce", utc=True)
    date_col = date_col.fillna(
        pd.to_datetime(raw["date"], format="%Y-%m-%d %I-%p", errors="coerce", utc=True)
    )
    disagree = int((date_col != frame[TIMESTAMP_COLUMN]).sum())
    if disagree:
        report.notes.append(
            f"{disagree} rows have a 'date' that disagrees with 'unix' (unix is used)"
        )

    # Newest row first in the file: the first data row is the candle still open at export time.
    unfinished = frame[TIMESTAMP_COLUMN].max()
    frame = frame[frame[TIMESTAMP_COLUMN] != unfinished]
    report.dropped.append(
        (unfinished.isoformat(), "unfinished last candle (export written mid-hour)")
    )

    frame = frame.sort_values([TIMESTAMP_COLUMN, "_precise"], kind="stable")
    dup = frame[TIMESTAMP_COLUMN].duplicated(keep="last")
    for ts in frame.loc[dup, TIMESTAMP_COLUMN]:
        report.dropped.append((ts.isoformat(), "duplicated hour: kept the full-precision row"))
    frame = frame[~dup]

    for ts, why in _BINANCE_KNOWN_BAD_ROWS.items():
        hit = frame[TIMESTAMP_COLUMN] == ts
        if hit.any():
            report.dropped.append((ts.isoformat(), why))
            frame = frame[~hit]

    frame = frame.drop(columns="_precise")
    clean = validate_candles(frame, allow_gaps=True)
    zero_volume = int((clean["volume"] == 0).sum())
    report.notes.append(
        f"{zero_volume} zero-volume hours (exchange downtime, forward-filled; kept)"
    )
    report.gaps = find_gaps(clean[TIMESTAMP_COLUMN])
    report.rows_kept = len(clean)
    return Candles(clean, report)


def load_bundled_eurusd(path: Path = BUNDLED_EURUSD) -> Candles:
    """Load the held-out EUR/USD 1h ask candles (gym-anytrading 2.0.0, MIT), for generalisation.

    Timestamps are ``dd.mm.yyyy HH:MM:SS.fff`` in UTC; weekends are gaps (reported).
    """
    sha = file_sha256(path)
    raw = pd.read_csv(path)
    ts = pd.to_datetime(raw["Time"], format="%d.%m.%Y %H:%M:%S.%f", utc=True)
    frame = pd.DataFrame(
        {
            TIMESTAMP_COLUMN: ts,
            "open": raw["Open"],
            "high": raw["High"],
            "low": raw["Low"],
            "close": raw["Close"],
            "volume": raw["Volume"],
        }
    )
    clean = validate_candles(frame, allow_gaps=True, row_offset=2, row_label="line")
    report = LoadReport(
        source=str(path),
        sha256=sha,
        rows_read=len(raw),
        rows_kept=len(clean),
        gaps=find_gaps(clean[TIMESTAMP_COLUMN]),
    )
    return Candles(clean, report)


def load_candles(
    path: str | Path, *, allow_gaps: bool = True, interval: str | pd.Timedelta | None = None
) -> Candles:
    """Load a user's OHLCV candles from CSV (optionally gzipped) or Parquet and validate them.

    Required columns (case-insensitive): ``timestamp`` (ISO 8601 with offset, epoch ms, or a
    tz-aware datetime column in Parquet), ``open, high, low, close, volume``. Rows must be
    oldest first, strictly increasing and on a regular grid of ``interval`` (default: inferred
    as the most common step, and reported); gaps are reported in the returned report (or raise when
    ``allow_gaps`` is False). Errors name the line and the rule.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    if path.name == BUNDLED_BTCUSDT.name:
        return load_bundled_btcusdt(path)
    if path.suffix == ".parquet":
        raw = pd.read_parquet(path)
        header_lines = 0
    else:
        raw = pd.read_csv(path)
        header_lines = 2  # row 0 of the frame is line 2 of the file
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in (TIMESTAMP_COLUMN, *OHLCV_COLUMNS) if c not in raw.columns]
    if missing:
        raise CandleValidationError(f"{path}: missing required column(s): {', '.join(missing)}")
    rows_read = len(raw)
    frame = raw[[TIMESTAMP_COLUMN, *OHLCV_COLUMNS]]
    del raw
    frame = frame.assign(**{TIMESTAMP_COLUMN: parse_timestamps(frame[TIMESTAMP_COLUMN])})
    notes = []
    if interval is None:
        step = infer_interval(frame[TIMESTAMP_COLUMN].sort_values())
        notes.append(f"bar interval inferred from the data: {_interval_text(step)}")
    else:
        step = pd.Timedelta(interval)
    label = "line" if header_lines else "row"
    clean = validate_candles(
        frame,
        interval=step,
        allow_gaps=allow_gaps,
        row_offset=header_lines,
        row_label=f"{path.name} {label}",
    )
    report = LoadReport(
        source=str(path),
        sha256=file_sha256(path),
        rows_read=rows_read,
        rows_kept=len(clean),
        gaps=find_gaps(clean[TIMESTAMP_COLUMN], step),
        notes=notes,
        interval=step,
    )
    return Candles(clean, report)
