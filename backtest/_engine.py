"""Signals -> positions -> returns: the execution model, with no lookahead by construction.

Execution convention (stated once, used everywhere, written into every report as
:data:`EXECUTION`): the probability of bar ``t`` is formed at bar ``t``'s close; the position it
asks for is filled at the **open of the next candle** ``t+1`` and held until the open of the
candle after that, where the following signal may change it. Row ``i`` of the per-bar table
therefore holds ``position[i] = policy(P(up)[i-1], position[i-1])`` (the decision policy of
:mod:`policy`: thresholds, no-trade band, minimum holding) and earns
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

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features import TIMESTAMP_COLUMN
from policy import POSITION_NAMES, DecisionPolicy

if TYPE_CHECKING:
    from backtest._schedule import PolicySchedule

BPS = 1e-4

EXECUTION = (
    "A signal formed at the close of bar t is filled at the open of the next candle (t+1) and "
    "held to the open of the candle after it; position[t+1] = policy(P(up)[t], position[t]) "
    "(the model's decision policy) and bar_return[t+1] = open[t+2] / open[t+1] - 1 (the last "
    "bar is marked at its close). "
    "Each position change pays (fee_bps + slippage_bps) on the traded fraction of equity at "
    "the fill; the book starts flat and is not liquidated at the end. Buy-and-hold is the same "
    "engine long on every bar: bought at the first traded bar's open, entry charged alike."
)

SIZING = (
    "Fully invested, no leverage: long = +1.0 x equity, flat = 0 (cash, no interest), "
    "short = -1.0 x equity (only with allow_short), resized to equity every bar at no charge."
)

SIGNAL_NAMES = POSITION_NAMES


def exit_prices(opens: np.ndarray, closes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Where a position held over candle ``rows`` is marked: the next candle's open (the row's
    own close for the last candle)."""
    n = len(opens)
    rows = np.asarray(rows)
    return np.where(rows + 1 < n, opens[np.minimum(rows + 1, n - 1)], closes[rows])


def open_to_open_returns(opens: np.ndarray, closes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``bar_return`` of candle ``rows`` under :data:`EXECUTION` (exit price over open, - 1)."""
    return exit_prices(opens, closes, rows) / opens[np.asarray(rows)] - 1.0


def costed_returns(
    position: np.ndarray, bar_return: np.ndarray, *, fee_bps: float, slippage_bps: float
) -> dict[str, np.ndarray]:
    """Per-bar ``turnover``, ``fee_cost``, ``slippage_cost``, ``cost`` and ``strategy_return``
    of ``position`` over bars earning ``bar_return``, the book flat before the first bar."""
    position = np.asarray(position, dtype="float64")
    previous = np.concatenate([[0.0], position[:-1]])
    turnover = np.abs(position - previous)
    fee_cost = turnover * fee_bps * BPS
    slippage_cost = turnover * slippage_bps * BPS
    cost = fee_cost + slippage_cost
    return {
        "turnover": turnover,
        "fee_cost": fee_cost,
        "slippage_cost": slippage_cost,
        "cost": cost,
        "strategy_return": (1.0 - cost) * (1.0 + position * bar_return) - 1.0,
    }


def simulate(
    candles: pd.DataFrame,
    probability_up: np.ndarray,
    *,
    first: int,
    last: int,
    fee_bps: float,
    slippage_bps: float,
    policy: DecisionPolicy | PolicySchedule,
) -> pd.DataFrame:
    """Replay signals over candle rows ``first..last`` (inclusive) under :data:`EXECUTION`.

    Args:
        candles: validated candle frame (RangeIndex, oldest first); gaps allowed.
        probability_up: P(up) per candle row (NaN where there is no signal), same length.
        first: row of the first traded bar, ``>= 1``: its position comes from the signal of
            row ``first - 1``.
        last: row of the last traded bar.
        fee_bps, slippage_bps: costs per unit of traded notional, in basis points.
        policy: turns each bar's P(up) and the position held into the next position
            (:class:`policy.DecisionPolicy`; the book is flat before row ``first``).

    Returns:
        The per-bar table (one row per traded bar): ``timestamp, close, probability_up, signal,
        position, bar_return, strategy_return, equity`` then ``open, exit_price, turnover,
        cost, fee_cost, slippage_cost, drawdown``. ``signal`` is the position the policy asks
        for after the row's own bar (the next row's ``position``). Costs are fractions of the
        equity before the fill.
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

    probability = np.asarray(probability_up, dtype="float64")
    targets = policy.positions(probability[first - 1 : last + 1], start_position=0)
    rows = np.arange(first, last + 1)
    opens = candles["open"].to_numpy(dtype="float64")
    closes = candles["close"].to_numpy(dtype="float64")
    position = targets[:-1].astype("float64")
    exit_price = exit_prices(opens, closes, rows)
    bar_return = exit_price / opens[rows] - 1.0
    costs = costed_returns(position, bar_return, fee_bps=fee_bps, slippage_bps=slippage_bps)
    equity = np.cumprod(1.0 + costs["strategy_return"])
    return pd.DataFrame(
        {
            TIMESTAMP_COLUMN: candles[TIMESTAMP_COLUMN].iloc[rows].reset_index(drop=True),
            "close": closes[rows],
            "probability_up": probability[rows],
            "signal": [SIGNAL_NAMES[int(t)] for t in targets[1:]],
            "position": position,
            "bar_return": bar_return,
            "strategy_return": costs["strategy_return"],
            "equity": equity,
            "open": opens[rows],
            "exit_price": exit_price,
            "turnover": costs["turnover"],
            "cost": costs["cost"],
            "fee_cost": costs["fee_cost"],
            "slippage_cost": costs["slippage_cost"],
            "drawdown": drawdown(equity),
        }
    )


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Equity over its running peak, minus one (the starting equity 1.0 counts as a peak)."""
    equity = np.asarray(equity, dtype="float64")
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return equity / peak - 1.0
