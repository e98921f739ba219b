"""The two public nouns: :class:`Backtest` (candles + probabilities + costs) and its result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest._engine import EXECUTION, SIZING, costed_returns, drawdown, simulate
from backtest._schedule import PolicySchedule
from backtest._stats import BARS_PER_YEAR, Stats, compare, strategy_and_buy_and_hold
from features import TIMESTAMP_COLUMN, validate_candles
from policy import DecisionPolicy

TradedPolicy = DecisionPolicy | PolicySchedule

DEFAULT_FEE_BPS = 10.0
"""Binance spot taker fee (0.1%) per side, without BNB discount."""
DEFAULT_SLIPPAGE_BPS = 2.0
"""Assumed cost of crossing the spread and moving the book, per side, for small BTCUSDT orders."""

STATS_CONVENTIONS = (
    f"Per-bar returns of hourly bars, annualised with {BARS_PER_YEAR} bars/year (24 x 365, a 24/7 "
    "market), risk-free rate 0; sharpe = mean/std(ddof=1) x sqrt(8760); sortino = mean/"
    "sqrt(mean(min(r,0)^2)) x sqrt(8760); cagr over calendar time (365-day years); "
    "max_drawdown negative, from running peaks including the starting equity; buy_and_hold is "
    "long every traded bar without costs (comparison.buy_and_hold_after_costs pays its entry "
    "like the strategy); cash earns 0."
)


def _as_timestamp(value: str | pd.Timestamp, what: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no UTC offset (naive timestamps are rejected)")
    return stamp.tz_convert("UTC")


@dataclass
class BacktestResult:
    """Per-bar table, statistics and the settings that produced them.

    ``bars`` is the per-bar CSV (see ``docs/API_CONTRACT.md``, "Backtest output");
    ``details`` carries mode-specific facts (walk-forward folds, timings, data source).
    """

    bars: pd.DataFrame
    strategy: Stats
    buy_and_hold: Stats
    fee_bps: float
    slippage_bps: float
    long_threshold: float
    short_threshold: float | None
    model_tag: str | None
    details: dict[str, Any] = field(default_factory=dict)
    policy: TradedPolicy = field(default_factory=DecisionPolicy.plain)
    policy_source: str = "plain threshold"
    comparison: dict[str, Stats] = field(default_factory=dict)

    @property
    def plain_policy(self) -> DecisionPolicy:
        """The plain threshold rule the policy is compared with."""
        return DecisionPolicy.plain(
            self.long_threshold,
            allow_short=self.short_threshold is not None,
            short_threshold=self.short_threshold,
        )

    @property
    def range(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Open times of the first and the last traded bar."""
        ts = self.bars[TIMESTAMP_COLUMN]
        return ts.iloc[0], ts.iloc[-1]

    @property
    def label(self) -> str:
        """What produced the signals: the model tag, or the walk-forward and its retrains."""
        if self.model_tag:
            return self.model_tag
        folds = self.details.get("folds")
        return f"walk-forward ({len(folds)} retrains)" if folds else "signals"

    def report(self) -> dict[str, Any]:
        """The JSON report (contract keys first, then conventions and details)."""
        first, last = self.range
        return {
            "strategy": self.strategy.to_dict(),
            "buy_and_hold": self.buy_and_hold.to_dict(),
            "fee_bps": self.fee_bps,
            "slippage_bps": self.slippage_bps,
            "execution": EXECUTION,
            "model_tag": self.model_tag,
            "range": [first.isoformat(), last.isoformat()],
            "position_sizing": SIZING,
            "statistics": STATS_CONVENTIONS,
            "bars_per_year": BARS_PER_YEAR,
            "long_threshold": self.long_threshold,
            "short_threshold": self.short_threshold,
            "bars_without_signal": int(self.bars["probability_up"].isna().sum()),
            "policy": self.policy.to_dict(),
            "policy_rule": self.policy.describe(),
            "policy_source": self.policy_source,
            "comparison": {name: stats.to_dict() for name, stats in self.comparison.items()},
            "reading": self.reading(),
            **_json_safe(self.details),
        }

    def reading(self) -> list[str]:
        """The honest reading of the figures, as sentences generated from them."""
        from backtest._report import reading

        return reading(self)

    def save(self, directory: str | Path, *, plot: bool = True) -> dict[str, Path]:
        """Write ``bars.csv``, ``report.json`` and (if ``plot``) ``backtest.png`` there."""
        from backtest._report import write_outputs

        return write_outputs(self, Path(directory), plot_figure=plot)

    def table(self) -> str:
        """A short side-by-side table of the headline numbers."""
        from backtest._report import summary_table

        return summary_table(self)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Backtest:
    """Replays P(up) signals over candles with next-open execution, fees and slippage.

    Example:
        >>> result = Backtest(candles, probability_up, fee_bps=10).run(start="2022-01-01T00:00Z")
        >>> result.strategy.sharpe, result.save("reports/backtest")

    Args:
        candles: OHLCV frame (``timestamp, open, high, low, close, volume``), oldest first,
            hourly grid, gaps allowed; validated here.
        probability_up: P(up) per bar, either a Series indexed by candle open time (bars it
            lacks have no signal and stay flat) or an array with one value per candle (NaN =
            no signal). The value at bar ``t`` must only use information up to ``t``'s close.
        fee_bps, slippage_bps: cost per unit of traded notional per position change.
        threshold: the plain rule, long when P(up) >= threshold (the comparison line, and the
            strategy when no ``policy`` is given).
        allow_short: the plain rule goes short when P(up) < ``short_threshold`` (default
            ``1 - threshold``).
        short_threshold: see ``allow_short``; must not exceed ``threshold``.
        policy: the decision policy traded (:class:`policy.DecisionPolicy`, e.g. the one stored
            with the model); default: the plain rule.
        policy_source: where ``policy`` came from (written into the report).
    """

    def __init__(
        self,
        candles: pd.DataFrame,
        probability_up: pd.Series | np.ndarray,
        *,
        fee_bps: float = DEFAULT_FEE_BPS,
        slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
        threshold: float = 0.5,
        allow_short: bool = False,
        short_threshold: float | None = None,
        policy: TradedPolicy | None = None,
        policy_source: str | None = None,
    ):
        self.candles = validate_candles(candles, allow_gaps=True)
        self.probability_up = self._align(probability_up)
        for name, value in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if short_threshold is not None and not allow_short:
            raise ValueError("short_threshold is given but allow_short is False")
        if allow_short:
            short_threshold = 1.0 - threshold if short_threshold is None else short_threshold
            if not 0.0 < short_threshold <= threshold:
                raise ValueError(
                    f"short_threshold must be in (0, threshold={threshold}], got {short_threshold}"
                )
        self.fee_bps = float(fee_bps)
        self.slippage_bps = float(slippage_bps)
        self.threshold = float(threshold)
        self.short_threshold = short_threshold
        self.plain = DecisionPolicy.plain(
            self.threshold, allow_short=allow_short, short_threshold=short_threshold
        )
        self.policy: TradedPolicy = self.plain if policy is None else policy
        self.policy_source = policy_source or (
            f"plain threshold {self.threshold:g}" if policy is None else "given"
        )

    def _align(self, probability_up: pd.Series | np.ndarray) -> np.ndarray:
        n = len(self.candles)
        if isinstance(probability_up, pd.Series):
            index = pd.DatetimeIndex(probability_up.index)
            if index.tz is None:
                raise ValueError("probability_up must be indexed by tz-aware candle open times")
            if not index.is_unique:
                raise ValueError("probability_up has duplicate timestamps")
            stamps = pd.DatetimeIndex(self.candles[TIMESTAMP_COLUMN])
            unknown = index.difference(stamps)
            if len(unknown):
                raise ValueError(
                    f"probability_up has {len(unknown)} timestamp(s) that are not candles, "
                    f"first {unknown[0]}"
                )
            values = probability_up.astype("float64").reindex(stamps).to_numpy()
        else:
            values = np.asarray(probability_up, dtype="float64")
            if values.shape != (n,):
                raise ValueError(
                    f"probability_up must have one value per candle ({n}), got shape {values.shape}"
                )
        finite = values[~np.isnan(values)]
        if ((finite < 0) | (finite > 1)).any():
            raise ValueError("probability_up values must lie in [0, 1]")
        return values

    def rows(
        self, start: str | pd.Timestamp | None = None, end: str | pd.Timestamp | None = None
    ) -> tuple[int, int]:
        """Candle rows of the first and last traded bar for ``start``/``end`` (inclusive).

        ``start`` defaults to the second candle (the first has no earlier signal).
        """
        stamps = pd.DatetimeIndex(self.candles[TIMESTAMP_COLUMN])
        first = 1
        last = len(stamps) - 1
        if start is not None:
            first = int(stamps.searchsorted(_as_timestamp(start, "start"), side="left"))
            if first == 0:
                raise ValueError(
                    f"start {start} leaves no earlier candle: the first traded bar's position "
                    f"comes from the previous bar's signal; the earliest start is {stamps[1]}"
                )
        if end is not None:
            last = int(stamps.searchsorted(_as_timestamp(end, "end"), side="right")) - 1
        if first > last or first >= len(stamps):
            raise ValueError(f"no candles to trade between start={start} and end={end}")
        return first, last

    def run(
        self,
        *,
        start: str | pd.Timestamp | None = None,
        end: str | pd.Timestamp | None = None,
        model_tag: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> BacktestResult:
        """Trade the bars from ``start`` to ``end`` (open times, inclusive) and score them."""
        first, last = self.rows(start, end)
        costs = {"fee_bps": self.fee_bps, "slippage_bps": self.slippage_bps}
        run = partial(
            simulate,
            self.candles,
            self.probability_up,
            first=first,
            last=last,
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
        )
        bars = run(policy=self.policy)
        plain = bars if self.plain == self.policy else run(policy=self.plain)
        _add_comparison_columns(bars, plain, **costs)
        strategy, buy_and_hold = strategy_and_buy_and_hold(bars, **costs)
        return BacktestResult(
            bars=bars,
            strategy=strategy,
            buy_and_hold=buy_and_hold,
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
            long_threshold=self.threshold,
            short_threshold=self.short_threshold,
            model_tag=model_tag,
            policy=self.policy,
            policy_source=self.policy_source,
            comparison=compare(bars, plain, **costs),
            details=dict(details or {}),
        )


def _add_comparison_columns(
    bars: pd.DataFrame, plain: pd.DataFrame, *, fee_bps: float, slippage_bps: float
) -> None:
    """Equity of the other lines, bar by bar: the policy before costs, the plain threshold
    (after and before costs) and buy-and-hold (the same engine, long on every bar)."""
    free = {"fee_bps": 0.0, "slippage_bps": 0.0}
    charged = {"fee_bps": fee_bps, "slippage_bps": slippage_bps}
    bar_return = bars["bar_return"].to_numpy()
    always_long = np.ones(len(bars))

    def equity(position: np.ndarray, costs: dict[str, float]) -> np.ndarray:
        return np.cumprod(1.0 + costed_returns(position, bar_return, **costs)["strategy_return"])

    bars["equity_before_costs"] = equity(bars["position"].to_numpy(), free)
    bars["plain_position"] = plain["position"].to_numpy()
    bars["plain_equity"] = plain["equity"].to_numpy()
    bars["plain_equity_before_costs"] = equity(bars["plain_position"].to_numpy(), free)
    bars["buy_and_hold_equity"] = equity(always_long, free)
    bars["buy_and_hold_equity_after_costs"] = equity(always_long, charged)
    bars["buy_and_hold_drawdown"] = drawdown(bars["buy_and_hold_equity"].to_numpy())
