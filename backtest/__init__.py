"""Fee-aware replay of a direction model's signals: signals -> positions -> returns -> stats.

Public API (everything else is private, in ``_``-prefixed modules):
    Backtest(candles, probability_up, *, fee_bps, slippage_bps, threshold, allow_short):
        ``.run(start=..., end=...)`` returns a :class:`BacktestResult` (per-bar table, stats of
        the strategy and of buy-and-hold, ``.report()``, ``.save(dir)``, ``.table()``).
    EXECUTION: the sentence stating at which price and when a signal trades.
    OutOfSampleError: raised when asked to trade a model over its own training period.
    backtest_stored_model(candles, *, model_tag, start, end, ...): a stored model, traded only
        after its training period.
    backtest_walk_forward(candles, *, config, test_bars, min_train_rows, ...): retrain before
        every test window, trade only that window.

Usage: ``python -m backtest.run --help`` (stored model or walk-forward).
"""

from backtest._backtest import Backtest, BacktestResult
from backtest._engine import EXECUTION
from backtest._modes import backtest_stored_model, backtest_walk_forward
from backtest._signals import OutOfSampleError
from backtest._stats import BARS_PER_YEAR, Stats

__all__ = [
    "BARS_PER_YEAR",
    "EXECUTION",
    "Backtest",
    "BacktestResult",
    "OutOfSampleError",
    "Stats",
    "backtest_stored_model",
    "backtest_walk_forward",
]
