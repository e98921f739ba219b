"""Performance statistics of a per-bar return series, the same for the strategy and buy-and-hold.

Conventions (also written into the JSON report):
- Hourly bars of a 24/7 market: :data:`BARS_PER_YEAR` ``= 24 * 365 = 8760``; risk-free rate 0.
- ``sharpe`` = mean / standard deviation (``ddof=1``) of the per-bar returns x sqrt(8760).
- ``sortino`` = mean / downside deviation x sqrt(8760), the downside deviation being
  ``sqrt(mean(min(r, 0) ** 2))`` over all bars (target return 0).
- ``cagr`` over calendar time, from the first bar's open to the last bar's close (365-day years).
- ``max_drawdown`` is negative (``-0.25`` = 25% below the running peak; the starting equity is a
  peak); ``max_drawdown_duration_*`` is the longest stretch from a peak until equity is back at it
  (or until the end if it never is).
- A trade is a run of bars with the same non-zero position; its return compounds its bars with
  its entry cost and, if it closed inside the backtest, its exit cost.
- ``fees_paid`` / ``slippage_paid`` are in units of the starting equity (1.0).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from backtest._engine import BPS, costed_returns

BARS_PER_YEAR = 24 * 365
"""Annualisation factor for hourly bars in a market open 24 hours a day, 365 days a year."""

YEAR = pd.Timedelta(days=365)
BAR = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class Stats:
    """What a trader reads first, for one return series over the traded bars."""

    bars: int
    total_return: float
    cagr: float
    annual_volatility: float
    sharpe: float | None
    sortino: float | None
    max_drawdown: float
    max_drawdown_duration_bars: int
    max_drawdown_duration_hours: float
    trades: int
    win_rate: float | None
    avg_trade_return: float | None
    best_trade_return: float | None
    worst_trade_return: float | None
    exposure: float
    turnover: float
    turnover_per_year: float
    fees_paid: float
    slippage_paid: float
    final_equity: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: non-finite numbers become ``None``."""
        return {k: _finite_or_none(v) for k, v in asdict(self).items()}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def max_drawdown_duration(equity: np.ndarray, times: pd.DatetimeIndex) -> tuple[int, pd.Timedelta]:
    """Longest peak-to-recovery stretch of ``[1.0, *equity]``, in points and in time.

    Args:
        equity: equity after each bar (starting equity 1.0 is prepended as the first point).
        times: ``len(equity) + 1`` instants of those points (start, then the end of each bar).
    """
    points = np.concatenate([[1.0], np.asarray(equity, dtype="float64")])
    n = len(points) - 1
    running_peak = np.maximum.accumulate(points)
    at_peak = points >= running_peak
    peak_index = np.maximum.accumulate(np.where(at_peak, np.arange(n + 1), 0))
    stretch_end = np.minimum(np.arange(n + 1) + 1, n)
    duration = np.where(at_peak, 0, stretch_end - peak_index)
    longest = int(np.argmax(duration))
    if duration[longest] == 0:
        return 0, pd.Timedelta(0)
    return int(duration[longest]), times[stretch_end[longest]] - times[peak_index[longest]]


def trade_returns(position: np.ndarray, bar_return: np.ndarray, *, cost_rate: float) -> np.ndarray:
    """Return of each trade (run of equal non-zero positions), costs included.

    Args:
        position: per-bar position (-1, 0, +1).
        bar_return: per-bar market return.
        cost_rate: cost per unit of traded notional (fees + slippage, as a fraction).
    """
    position = np.asarray(position, dtype="float64")
    n = len(position)
    if n == 0:
        return np.empty(0)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(position) != 0) + 1])
    stops = np.concatenate([starts[1:], [n]])
    gross = np.multiply.reduceat(1.0 + position * np.asarray(bar_return, dtype="float64"), starts)
    size = np.abs(position[starts])
    closed = stops < n
    growth = gross * (1.0 - cost_rate * size) * np.where(closed, 1.0 - cost_rate * size, 1.0)
    return (growth - 1.0)[size > 0]


def compute_stats(
    *,
    timestamps: pd.Series,
    returns: np.ndarray,
    position: np.ndarray,
    bar_return: np.ndarray,
    turnover: np.ndarray,
    fee_cost: np.ndarray,
    slippage_cost: np.ndarray,
    cost_rate: float,
) -> Stats:
    """Statistics of one per-bar return series (see the module docstring for definitions).

    Args:
        timestamps: open time of each traded bar.
        returns: per-bar return of the series (after costs).
        position, bar_return, turnover: the series' position, the market return, ``|dpos|``.
        fee_cost, slippage_cost: per-bar costs as fractions of the equity before the fill.
        cost_rate: cost per unit of turnover, ``(fee_bps + slippage_bps) / 1e4``.
    """
    returns = np.asarray(returns, dtype="float64")
    n = len(returns)
    if n == 0:
        raise ValueError("no bars to compute statistics on")
    equity = np.cumprod(1.0 + returns)
    equity_before = np.concatenate([[1.0], equity[:-1]])
    start = pd.Timestamp(timestamps.iloc[0])
    bar_ends = pd.DatetimeIndex(timestamps) + BAR
    times = pd.DatetimeIndex([start]).append(bar_ends)
    years = (bar_ends[-1] - start) / YEAR
    final = float(equity[-1])
    cagr = final ** (1.0 / years) - 1.0 if final > 0 else -1.0

    std = float(np.std(returns, ddof=1)) if n > 1 else 0.0
    mean = float(np.mean(returns))
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    annual = math.sqrt(BARS_PER_YEAR)
    sharpe = mean / std * annual if std > 0 else math.nan
    sortino = mean / downside * annual if downside > 0 else math.nan

    dd = equity / np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:] - 1.0
    dd_bars, dd_time = max_drawdown_duration(equity, times)
    trades = trade_returns(position, bar_return, cost_rate=cost_rate)
    total_turnover = float(np.sum(turnover))
    return Stats(
        bars=n,
        total_return=final - 1.0,
        cagr=float(cagr),
        annual_volatility=std * annual,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=float(min(dd.min(), 0.0)),
        max_drawdown_duration_bars=dd_bars,
        max_drawdown_duration_hours=dd_time / BAR,
        trades=len(trades),
        win_rate=float(np.mean(trades > 0)) if len(trades) else math.nan,
        avg_trade_return=float(np.mean(trades)) if len(trades) else math.nan,
        best_trade_return=float(np.max(trades)) if len(trades) else math.nan,
        worst_trade_return=float(np.min(trades)) if len(trades) else math.nan,
        exposure=float(np.mean(np.asarray(position) != 0)),
        turnover=total_turnover,
        turnover_per_year=total_turnover / years,
        fees_paid=float(np.sum(equity_before * fee_cost)),
        slippage_paid=float(np.sum(equity_before * slippage_cost)),
        final_equity=final,
    )


def strategy_and_buy_and_hold(
    bars: pd.DataFrame, *, fee_bps: float, slippage_bps: float
) -> tuple[Stats, Stats]:
    """:class:`Stats` of the strategy and of buy-and-hold (long every bar, no costs)."""
    timestamps = bars["timestamp"]
    zeros = np.zeros(len(bars))
    strategy = compute_stats(
        timestamps=timestamps,
        returns=bars["strategy_return"].to_numpy(),
        position=bars["position"].to_numpy(),
        bar_return=bars["bar_return"].to_numpy(),
        turnover=bars["turnover"].to_numpy(),
        fee_cost=bars["fee_cost"].to_numpy(),
        slippage_cost=bars["slippage_cost"].to_numpy(),
        cost_rate=(fee_bps + slippage_bps) * BPS,
    )
    buy_and_hold = compute_stats(
        timestamps=timestamps,
        returns=bars["bar_return"].to_numpy(),
        position=np.ones(len(bars)),
        bar_return=bars["bar_return"].to_numpy(),
        turnover=np.concatenate([[1.0], zeros[1:]]),
        fee_cost=zeros,
        slippage_cost=zeros,
        cost_rate=0.0,
    )
    return strategy, buy_and_hold


def line_stats(
    timestamps: pd.Series,
    position: np.ndarray,
    bar_return: np.ndarray,
    *,
    fee_bps: float,
    slippage_bps: float,
) -> Stats:
    """:class:`Stats` of holding ``position`` over the bars under the engine's execution and
    costs (the book flat before the first bar)."""
    costs = costed_returns(position, bar_return, fee_bps=fee_bps, slippage_bps=slippage_bps)
    return compute_stats(
        timestamps=timestamps,
        returns=costs["strategy_return"],
        position=np.asarray(position, dtype="float64"),
        bar_return=bar_return,
        turnover=costs["turnover"],
        fee_cost=costs["fee_cost"],
        slippage_cost=costs["slippage_cost"],
        cost_rate=(fee_bps + slippage_bps) * BPS,
    )


COMPARISON_LINES = (
    "policy",
    "policy_before_costs",
    "plain_threshold",
    "plain_threshold_before_costs",
    "buy_and_hold_after_costs",
    "buy_and_hold",
    "cash",
)
"""The lines every backtest reports side by side (``policy`` is the traded strategy)."""


def compare(
    bars: pd.DataFrame, plain: pd.DataFrame, *, fee_bps: float, slippage_bps: float
) -> dict[str, Stats]:
    """The policy, the plain threshold and buy-and-hold, each after and before costs, and cash,
    over the same bars (``plain``: the per-bar table of the plain threshold)."""
    timestamps, bar_return = bars["timestamp"], bars["bar_return"].to_numpy()
    positions = {
        "policy": bars["position"].to_numpy(),
        "plain_threshold": plain["position"].to_numpy(),
        "buy_and_hold": np.ones(len(bars)),
    }
    charged = {"fee_bps": fee_bps, "slippage_bps": slippage_bps}
    free = {"fee_bps": 0.0, "slippage_bps": 0.0}
    out: dict[str, Stats] = {}
    for name, position in positions.items():
        after = line_stats(timestamps, position, bar_return, **charged)
        before = line_stats(timestamps, position, bar_return, **free)
        if name == "buy_and_hold":
            out |= {"buy_and_hold_after_costs": after, "buy_and_hold": before}
        else:
            out |= {name: after, f"{name}_before_costs": before}
    out["cash"] = line_stats(timestamps, np.zeros(len(bars)), bar_return, **free)
    return {name: out[name] for name in COMPARISON_LINES}
