"""Signals -> positions -> returns: the execution model, with no lookahead by construction.

Execution convention (stated once, used everywhere, written into every report as
:data:`EXECUTION`): the probability of bar ``t`` is formed at bar ``t``'s close; the position it
asks for is filled at the **open of the next candle** ``t+1`` and held until the open of the
candle after that, where the following signal may change it. Row ``i`` of the per-bar table
therefore holds ``position[i] = target(signal[i-1])`` and earns
``bar_return[i] = exit_price[i] / open[i] - 1`` with ``exit_price[i] = open[i+1]`` (the close of
row ``i`` when it is the last candle of the data). Across a hole in the data the position is
simply held until the next candle that exists.

Costs: every change of position pays ``fee_bps + slippage_bps`` basis points on the traded
notional, ``|position[i] - position[i-1]|`` of equity, at the fill:
``strategy_return[i] = (1 - cost[i]) * (1 + position[i] * bar_return[i]) - 1``.

Sizing: positions are ``+1`` (all equity long), ``0`` (flat, in cash earning nothing) or ``-1``
(short the whole equity, an option); no leverage. A short is kept at 100% of equity every bar
(the small resizing trades this implies are not charged). The book starts flat before the first
traded bar (its entry is charged) and is marked to market at the end (no final exit is charged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import TIMESTAMP_COLUMN

BPS = 1e-4

EXECUTION = (
    "A signal formed at the close of bar t is filled at the open of the next candle (t+1) and "
    "held to the open of the candle after it; position[t+1] = target(signal[t]) and "
    "bar_return[t+1] = open[t+2] / open[t+1] - 1 (the last bar is marked at its close). "
    "Each position change pays (fee_bps + slippage_bps) on the traded fraction of equity at "
    "the fill; the book starts flat and is not liquidated at the end."
)

SIZING = (
    "Fully invested, no leverage: long = +1.0 x equity, flat = 0 (cash, no interest), "
    "short = -1.0 x equity (only with allow_short), resized to equity every bar at no charge."
)

SIGNAL_NAMES = {1: "long", 0: "flat", -1: "short"}


def target_positions(
    probability_up: np.ndarray,
    *,
    long_threshold: float,
    short_threshold: float | None,
) -> np.ndarray:
    """The position each signal asks for: +1 if P(up) >= long_threshold, -1 if short selling
    is enabled (``short_threshold`` not None) and P(up) < short_threshold, else 0.

    A missing probability (NaN: a bar without features, e.g. the warm-up after a gap) asks
    to be flat.
    """
    p = np.asarray(probability_up, dtype="float64")
    target = np.zeros(len(p), dtype="int64")
    with np.errstate(invalid="ignore"):
        target[p >= long_threshold] = 1
        if short_threshold is not None:
            target[p < short_threshold] = -1
    return target


def simulate(
    candles: pd.DataFrame,
    probability_up: np.ndarray,
    *,
    first: int,
    last: int,
    fee_bps: float,
    slippage_bps: float,
    long_threshold: float,
    short_threshold: float | None,
) -> pd.DataFrame:
    """Replay signals over candle rows ``first..last`` (inclusive) under :data:`EXECUTION`.

    Args:
        candles: validated candle frame (RangeIndex, oldest first); gaps allowed.
        probability_up: P(up) per candle row (NaN where there is no signal), same length.
        first: row of the first traded bar, ``>= 1``: its position comes from the signal of
            row ``first - 1``.
        last: row of the last traded bar.
        fee_bps, slippage_bps: costs per unit of traded notional, in basis points.
        long_threshold, short_threshold: see :func:`target_positions`.

    Returns:
        The per-bar table (one row per traded bar): ``timestamp, close, probability_up, signal,
        position, bar_return, strategy_return, equity`` then ``open, exit_price, turnover,
        cost, fee_cost, slippage_cost, buy_and_hold_equity, drawdown,
        buy_and_hold_drawdown``. Costs are fractions of the equity before the fill.
    """
    n = len(candles)
    if len(probability_up) != n:
        raise ValueError(f"probability_up has {len(probability_up)} rows, candles have {n}")
    if not 1 <= first <= last < n:
        raise ValueError(
            f"traded rows {first}..{last} must satisfy 1 <= first <= last < {n} (the first "
            "traded bar needs an earlier candle whose signal sets its position)"
        )
    if fee_bps < 0 or slippage_bps < 0:
        raise ValueError("fee_bps and slippage_bps must be >= 0")

    target = target_positions(
        probability_up, long_threshold=long_threshold, short_threshold=short_threshold
    )
    rows = np.arange(first, last + 1)
    opens = candles["open"].to_numpy(dtype="float64")
    closes = candles["close"].to_numpy(dtype="float64")
    position = target[rows - 1].astype("float64")
    exit_price = np.where(rows + 1 < n, opens[np.minimum(rows + 1, n - 1)], closes[rows])
    bar_return = exit_price / opens[rows] - 1.0

    previous = np.concatenate([[0.0], position[:-1]])
    turnover = np.abs(position - previous)
    fee_cost = turnover * fee_bps * BPS
    slippage_cost = turnover * slippage_bps * BPS
    cost = fee_cost + slippage_cost
    strategy_return = (1.0 - cost) * (1.0 + position * bar_return) - 1.0
    equity = np.cumprod(1.0 + strategy_return)
    buy_and_hold_equity = np.cumprod(1.0 + bar_return)

    probability = np.asarray(probability_up, dtype="float64")[rows]
    return pd.DataFrame(
        {
            TIMESTAMP_COLUMN: candles[TIMESTAMP_COLUMN].iloc[rows].reset_index(drop=True),
            "close": closes[rows],
            "probability_up": probability,
            "signal": [SIGNAL_NAMES[int(t)] for t in target[rows]],
            "position": position,
            "bar_return": bar_return,
            "strategy_return": strategy_return,
            "equity": equity,
            "open": opens[rows],
            "exit_price": exit_price,
            "turnover": turnover,
            "cost": cost,
            "fee_cost": fee_cost,
            "slippage_cost": slippage_cost,
            "buy_and_hold_equity": buy_and_hold_equity,
            "drawdown": drawdown(equity),
            "buy_and_hold_drawdown": drawdown(buy_and_hold_equity),
        }
    )


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Equity over its running peak, minus one (the starting equity 1.0 counts as a peak)."""
    equity = np.asarray(equity, dtype="float64")
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return equity / peak - 1.0
