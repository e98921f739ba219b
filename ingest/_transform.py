"""Transform: klines from pages or files -> the closed candles to add to a dataset.

- every batch passes the one candle rule set (:func:`features.candles.validate_candles`),
  with errors naming the page or file row and the rule, plus the grid rule (open times on the
  interval's grid);
- a candle still forming (close time after the exchange's clock) is never kept;
- a candle met twice with the same values is kept once; met with different values, it is an
  error naming both rows; the same holds against the candles already stored;
- only candles after the last stored one are added; gaps are reported, never filled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.candles import (
    OHLCV_COLUMNS,
    TIMESTAMP_COLUMN,
    CandleValidationError,
    Gap,
    find_gaps,
    validate_candles,
)
from ingest._klines import CLOSE_TIME_COLUMN, KlineBatch

ROW_NAME_COLUMN = "_row"
GRID_ORIGIN = pd.Timestamp(0, tz="UTC")
"""Binance's bars are aligned on the epoch (weekly bars excepted: they start on Mondays)."""


@dataclass
class NewCandles:
    """What the transform step decided."""

    frame: pd.DataFrame  # the candles to append, contract columns, oldest first
    forming: list[pd.Timestamp] = field(default_factory=list)  # open times dropped as forming
    duplicates: int = 0  # rows met more than once with identical values (kept once)
    already_stored: int = 0  # rows at or before the last stored candle (checked, not added)
    gaps: list[Gap] = field(default_factory=list)  # from the last stored candle on


def _check_grid(batch: KlineBatch, interval: pd.Timedelta) -> None:
    if interval >= pd.Timedelta(weeks=1):
        return
    offset = (batch.frame[TIMESTAMP_COLUMN] - GRID_ORIGIN) % interval
    bad = (offset != pd.Timedelta(0)).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise CandleValidationError(
            f"{batch.row_names[i]}: open time {batch.frame[TIMESTAMP_COLUMN].iloc[i].isoformat()} "
            f"is not on the {interval} grid"
        )


def _closed_rows(
    batch: KlineBatch, exchange_time: pd.Timestamp | None
) -> tuple[pd.DataFrame, list[str], list[pd.Timestamp]]:
    frame = batch.frame
    if exchange_time is None:
        keep = np.ones(len(frame), dtype=bool)
    else:
        keep = (frame[CLOSE_TIME_COLUMN] <= exchange_time).to_numpy()
    forming = list(frame.loc[~keep, TIMESTAMP_COLUMN])
    names = [n for n, k in zip(batch.row_names, keep, strict=True) if k]
    return frame.loc[keep].reset_index(drop=True), names, forming


def _values(row: pd.Series) -> str:
    return ", ".join(f"{c}={float(row[c])!r}" for c in OHLCV_COLUMNS)


def _drop_repeats(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the first of rows with equal timestamps and equal values; refuse differing ones."""
    frame = frame.sort_values(TIMESTAMP_COLUMN, kind="stable").reset_index(drop=True)
    repeated = frame[TIMESTAMP_COLUMN].duplicated(keep="first").to_numpy()
    if not repeated.any():
        return frame, 0
    first = frame.groupby(TIMESTAMP_COLUMN, sort=False).head(1).set_index(TIMESTAMP_COLUMN)
    for i in np.flatnonzero(repeated):
        row = frame.iloc[i]
        kept = first.loc[row[TIMESTAMP_COLUMN]]
        same = np.array_equal(
            row[list(OHLCV_COLUMNS)].to_numpy(dtype="float64"),
            kept[list(OHLCV_COLUMNS)].to_numpy(dtype="float64"),
        )
        if not same:
            raise CandleValidationError(
                f"conflicting values for candle {row[TIMESTAMP_COLUMN].isoformat()}: "
                f"{kept[ROW_NAME_COLUMN]} has {_values(kept)}, {row[ROW_NAME_COLUMN]} has "
                f"{_values(row)}"
            )
    return frame.loc[~repeated].reset_index(drop=True), int(repeated.sum())


def _check_against_stored(incoming: pd.DataFrame, stored: pd.DataFrame) -> None:
    overlap = incoming.merge(stored, on=TIMESTAMP_COLUMN, suffixes=("", "_stored"))
    for column in OHLCV_COLUMNS:
        differs = (overlap[column] != overlap[f"{column}_stored"]).to_numpy()
        if differs.any():
            row = overlap.iloc[int(np.argmax(differs))]
            stored_row = row[[f"{c}_stored" for c in OHLCV_COLUMNS]]
            stored_row.index = list(OHLCV_COLUMNS)
            raise CandleValidationError(
                f"conflicting values for candle {row[TIMESTAMP_COLUMN].isoformat()}: the stored "
                f"dataset has {_values(stored_row)}, {row[ROW_NAME_COLUMN]} has {_values(row)}"
            )


def new_candles(
    batches: Iterable[KlineBatch],
    *,
    interval: pd.Timedelta,
    exchange_time: pd.Timestamp | None,
    stored: pd.DataFrame | None = None,
) -> NewCandles:
    """The closed, validated candles of ``batches`` that come after ``stored``'s last one.

    Args:
        batches: pages or files, each validated on its own (so messages name their rows).
        interval: the bar interval.
        exchange_time: the exchange's clock; candles closing after it are still forming and
            are dropped. None for archive files (they hold finished periods only).
        stored: the dataset so far (contract columns), or None.

    Raises:
        CandleValidationError: a rule broken (row and rule named) or a candle met with two
            different values (both named).
    """
    parts, forming = [], []
    for batch in batches:
        _check_grid(batch, interval)
        rows, names, dropped = _closed_rows(batch, exchange_time)
        forming += dropped
        if rows.empty:
            continue
        clean = validate_candles(rows, interval=interval, allow_gaps=True, row_names=names)
        parts.append(clean.assign(**{ROW_NAME_COLUMN: names}))
    columns = [TIMESTAMP_COLUMN, *OHLCV_COLUMNS]
    if not parts:
        return NewCandles(frame=pd.DataFrame(columns=columns), forming=forming)
    incoming, duplicates = _drop_repeats(pd.concat(parts, ignore_index=True))
    already = 0
    anchor = incoming[TIMESTAMP_COLUMN][:0]  # the last stored candle, for the gap report
    if stored is not None and len(stored):
        anchor = stored[TIMESTAMP_COLUMN].iloc[-1:]
        last = anchor.iloc[0]
        _check_against_stored(incoming, stored)
        old = (incoming[TIMESTAMP_COLUMN] <= last).to_numpy()
        already = int(old.sum())
        incoming = incoming.loc[~old].reset_index(drop=True)
    added = incoming[columns].reset_index(drop=True)
    span = pd.concat([anchor, added[TIMESTAMP_COLUMN]], ignore_index=True)
    return NewCandles(
        frame=added,
        forming=forming,
        duplicates=duplicates,
        already_stored=already,
        gaps=find_gaps(span, interval) if len(span) > 1 else [],
    )
