"""Fee-aware replay of a direction model's signals: signals -> positions -> returns -> stats.

Public API (everything else is private, in ``_``-prefixed modules):
    Backtest(candles, probability_up, *, fee_bps, slippage_bps, threshold, allow_short):
        ``.run(start=..., end=...)`` returns a :class:`BacktestResult` (per-bar table, stats of
        the strategy and of buy-and-hold, ``.report()``, ``.save(dir)``, ``.table()``).
    EXECUTION: the sentence stating at which price and when a signal trades.
    OutOfSampleError: raised when asked to trade a model over its own training period.

Usage: ``python -m backtest.run --help`` (stored model or walk-forward).
"""

from backtest._backtest import Backtest, BacktestResult
from backtest._engine import EXECUTION
from backtest._signals import OutOfSampleError
from backtest._stats import BARS_PER_YEAR, Stats

__all__ = ["BARS_PER_YEAR", "EXECUTION", "Backtest", "BacktestResult", "OutOfSampleError", "Stats"]
