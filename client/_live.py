"""The newest closed candles, from the exchange or from a dataset, ready for ``predict``.

The exchange path asks Binance's REST API (``GET /api/v3/time`` + ``/api/v3/klines``) and
applies the same rules as ``btcusdt data update`` (:mod:`ingest`): the candle rules, and no
candle that is still forming by the exchange's clock. A window must be gap-free for
``predict``, so a gap inside the requested window is an error that names it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _gap_free_tail(
    frame: pd.DataFrame, bars: int, interval: pd.Timedelta, source: str
) -> pd.DataFrame:
    from features.candles import find_gaps

    if len(frame) < bars:
        raise ValueError(f"{source}: only {len(frame)} closed candles, {bars} asked for")
    window = frame.iloc[-bars:].reset_index(drop=True)
    gaps = find_gaps(window["timestamp"], interval)
    if gaps:
        gap = gaps[-1]
        raise ValueError(
            f"{source}: the newest {bars} candles have a gap ({gap.missing_bars} bar(s) missing "
            f"after {gap.after.isoformat()}); predict needs a gap-free window"
        )
    return window


def closed_candles_from_exchange(
    bars: int,
    *,
    base_url: str | None = None,
    symbol: str = "BTCUSDT",
    interval: str = "1h",
) -> pd.DataFrame:
    """The newest ``bars`` closed candles of ``symbol`` (contract columns, oldest first).

    Raises:
        ValueError: too few closed candles, a gap in the window, or data breaking the rules.
        ingest.ExchangeError / ExchangeUnavailable: the exchange refused or stayed down.
    """
    from ingest import DEFAULT_BASE_URL, BinanceRest
    from ingest._klines import interval_timedelta
    from ingest._transform import new_candles

    step = interval_timedelta(interval)
    rest = BinanceRest(base_url or DEFAULT_BASE_URL)
    try:
        now = rest.server_time()
        start = now - step * (bars + 1)  # one more: the newest may still be forming
        pages = list(rest.pages(symbol, interval, start=start, end=now))
    finally:
        rest.close()
    closed = new_candles(pages, interval=step, exchange_time=now).frame
    return _gap_free_tail(closed, bars, step, f"{symbol} {interval} at {rest.base_url}")


def closed_candles_from_dataset(path: str | Path, bars: int) -> pd.DataFrame:
    """The newest ``bars`` candles of a dataset written by ``btcusdt data update`` (closed
    candles only, by construction), or of any file ``training.data.load_candles`` reads."""
    from training.data import load_candles

    candles = load_candles(path)
    return _gap_free_tail(candles.frame, bars, candles.interval, str(path))
