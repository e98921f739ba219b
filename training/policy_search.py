"""Choosing the decision policy out of sample: a small grid, scored after costs on out-of-fold
predictions only.

The inputs are the walk-forward folds' out-of-fold P(up) (each fold's model scored on the block
after its training rows) and the candles' prices up to ``last_price_time`` (training: the last
row before the holdout; walk-forward backtest: the signal bar of the window being traded). Each
fold is a *stretch*: its signal bars, the P(up) formed at each, and the return the position set
there earns under the backtest's execution (filled at the next open, held to the open after,
:func:`backtest._engine.open_to_open_returns`), with the backtest's costs
(:func:`backtest._engine.costed_returns`). A signal bar whose return would need a price after
``last_price_time`` is dropped, so the search never sees a price the fit may not.

Objective (:data:`OBJECTIVE`): after-cost log growth, summed over every bar of every stretch
(each starts flat). Cash scores 0. Every candidate of the grid is scored and the count is
recorded: the more candidates, the more the winner's validation figure flatters it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backtest._engine import costed_returns, open_to_open_returns
from features import TIMESTAMP_COLUMN
from policy import DecisionPolicy

GRID_ENTRY = (0.50, 0.52, 0.54, 0.56, 0.58, 0.60, 0.62)
"""Long when P(up) >= entry (the default model's out-of-fold P(up): 5 % .. 95 % = 0.39 .. 0.63)."""
GRID_BAND = (0.0, 0.02, 0.04)
"""exit = entry - band: the width of the no-trade band."""
GRID_MIN_HOLD_BARS = (1, 6, 24, 72, 168)
"""Minimum holding time: none, six hours, a day, three days, a week."""
BARS_PER_YEAR = 24 * 365
OBJECTIVE = (
    "after-cost log growth: the sum of log(1 + strategy return) over every out-of-fold bar of "
    "the walk-forward validation folds (each fold starts flat), at fee_bps + slippage_bps per "
    "position change; ties go to the lower turnover"
)


def candidate_policies(*, allow_short: bool = False) -> list[DecisionPolicy]:
    """The grid, in a fixed order; with ``allow_short`` the short side mirrors the long one
    (``short_entry = 1 - entry``, ``short_exit = 1 - exit``) where that is a valid policy."""
    out = []
    for entry in GRID_ENTRY:
        for band in GRID_BAND:
            exit_ = round(entry - band, 6)
            for hold in GRID_MIN_HOLD_BARS:
                if not allow_short:
                    out.append(DecisionPolicy(entry=entry, exit=exit_, min_hold_bars=hold))
                    continue
                short_entry, short_exit = round(1 - entry, 6), round(1 - exit_, 6)
                if short_entry <= exit_ and short_exit <= entry:
                    out.append(
                        DecisionPolicy(
                            entry=entry,
                            exit=exit_,
                            min_hold_bars=hold,
                            allow_short=True,
                            short_entry=short_entry,
                            short_exit=short_exit,
                        )
                    )
    return out


@dataclass(frozen=True)
class Stretch:
    """One validation fold's signals: P(up) at consecutive candle rows (NaN where the fold has
    none) and the return the position set at each earns over the next bar."""

    name: str
    signal_times: pd.DatetimeIndex
    probability_up: np.ndarray
    bar_return: np.ndarray
    last_price_time: pd.Timestamp

    @property
    def bars(self) -> int:
        return len(self.bar_return)

    def provenance(self) -> dict[str, Any]:
        """What the search read: the signal bars and the last price (open times)."""
        return {
            "fold": self.name,
            "bars": self.bars,
            "signal_range": [self.signal_times[0].isoformat(), self.signal_times[-1].isoformat()],
            "last_price_time": self.last_price_time.isoformat(),
        }


def make_stretch(
    name: str,
    candles: pd.DataFrame,
    probability_up: pd.Series,
    *,
    last_price_time: pd.Timestamp,
) -> Stretch:
    """The stretch of out-of-fold ``probability_up`` (indexed by candle open time) over
    ``candles`` (validated, RangeIndex), using no price after ``last_price_time``.

    Raises:
        ValueError: a probability on a bar that is not a candle, or nothing left to score.
    """
    stamps = pd.DatetimeIndex(candles[TIMESTAMP_COLUMN])
    rows = stamps.get_indexer(pd.DatetimeIndex(probability_up.index))
    if (rows < 0).any():
        raise ValueError(f"{name}: out-of-fold probabilities on bars that are not candles")
    # The position set at signal row r is held over row r + 1 and marked at open[r + 2].
    usable_last = int(stamps.searchsorted(last_price_time, side="right")) - 1 - 2
    first, last = int(rows.min()), min(int(rows.max()), usable_last)
    if last < first:
        raise ValueError(f"{name}: no signal bar whose return is known by {last_price_time}")
    signal_rows = np.arange(first, last + 1)
    probability = np.full(len(signal_rows), np.nan)
    inside = rows <= last
    probability[rows[inside] - first] = probability_up.to_numpy(dtype="float64")[inside]
    opens = candles["open"].to_numpy(dtype="float64")
    closes = candles["close"].to_numpy(dtype="float64")
    bar_return = open_to_open_returns(opens, closes, signal_rows + 1)
    return Stretch(
        name=name,
        signal_times=stamps[signal_rows],
        probability_up=probability,
        bar_return=bar_return,
        last_price_time=stamps[last + 2],
    )


def score(
    policy: DecisionPolicy, stretch: Stretch, *, fee_bps: float, slippage_bps: float
) -> dict[str, float]:
    """After-cost log growth, total return, turnover, trades and exposure of ``policy`` over
    ``stretch`` (the book flat before its first bar)."""
    position = policy.positions(stretch.probability_up)
    costs = costed_returns(position, stretch.bar_return, fee_bps=fee_bps, slippage_bps=slippage_bps)
    log_growth = float(np.sum(np.log1p(costs["strategy_return"])))
    entries = np.flatnonzero((position != 0) & (np.diff(position, prepend=0) != 0))
    return {
        "log_growth": log_growth,
        "total_return": math.expm1(log_growth),
        "turnover": float(np.sum(costs["turnover"])),
        "trades": len(entries),
        "exposure": float(np.mean(position != 0)),
        "bars": stretch.bars,
    }


def _total(per_fold: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    bars = sum(f["bars"] for f in per_fold)
    log_growth = sum(f["log_growth"] for f in per_fold)
    turnover = sum(f["turnover"] for f in per_fold)
    return {
        "log_growth": log_growth,
        "total_return": math.expm1(log_growth),
        "turnover_per_year": turnover / bars * BARS_PER_YEAR,
        "trades": int(sum(f["trades"] for f in per_fold)),
        "exposure": sum(f["exposure"] * f["bars"] for f in per_fold) / bars,
        "bars": bars,
        "fold_total_returns": [f["total_return"] for f in per_fold],
    }


@dataclass(frozen=True)
class PolicySearch:
    """The chosen policy, how every candidate scored, and what the search read."""

    chosen: DecisionPolicy
    plain: DecisionPolicy
    stretches: tuple[Stretch, ...]
    results: tuple[tuple[DecisionPolicy, dict[str, Any]], ...]
    fee_bps: float
    slippage_bps: float

    @property
    def candidates(self) -> int:
        return len(self.results)

    def totals(self, policy: DecisionPolicy) -> dict[str, Any]:
        per_fold = [
            score(policy, s, fee_bps=self.fee_bps, slippage_bps=self.slippage_bps)
            for s in self.stretches
        ]
        return _total(per_fold)

    @property
    def source(self) -> str:
        return (
            f"searched on the out-of-fold predictions of {len(self.stretches)} walk-forward "
            f"folds: {self.candidates} candidates, after-cost log growth at "
            f"{self.fee_bps:g} + {self.slippage_bps:g} bps"
        )

    def metadata(self) -> dict[str, Any]:
        """The policy with its provenance, for the model's metadata (``decision_policy``)."""
        chosen, plain = self.totals(self.chosen), self.totals(self.plain)
        hold = self.totals_of_positions(np.ones)
        ranked = sorted(self.results, key=lambda item: _rank_key(item[1]))
        return {
            "policy": self.chosen.to_dict(),
            "rule": self.chosen.describe(),
            "source": self.source,
            "objective": OBJECTIVE,
            "fee_bps": self.fee_bps,
            "slippage_bps": self.slippage_bps,
            "candidates": self.candidates,
            "grid": {
                "entry": list(GRID_ENTRY),
                "band": list(GRID_BAND),
                "min_hold_bars": list(GRID_MIN_HOLD_BARS),
                "allow_short": self.chosen.allow_short,
            },
            "search_range": [
                self.stretches[0].signal_times[0].isoformat(),
                max(s.last_price_time for s in self.stretches).isoformat(),
            ],
            "folds": [s.provenance() for s in self.stretches],
            "validation": {
                "policy": chosen,
                "plain_threshold": plain,
                "buy_and_hold": hold,
                "cash": {"total_return": 0.0, "log_growth": 0.0, "turnover_per_year": 0.0},
            },
            "beats_cash_after_costs": chosen["log_growth"] > 0.0,
            "top": [
                {"policy": p.to_dict(), **{k: v for k, v in r.items() if k != "fold_total_returns"}}
                for p, r in ranked[:5]
            ],
        }

    def totals_of_positions(self, make: Any) -> dict[str, Any]:
        """Totals of a fixed position series (``np.ones``: buy-and-hold) over the stretches."""
        per_fold = []
        for s in self.stretches:
            position = make(s.bars)
            costs = costed_returns(
                position, s.bar_return, fee_bps=self.fee_bps, slippage_bps=self.slippage_bps
            )
            log_growth = float(np.sum(np.log1p(costs["strategy_return"])))
            per_fold.append(
                {
                    "log_growth": log_growth,
                    "total_return": math.expm1(log_growth),
                    "turnover": float(np.sum(costs["turnover"])),
                    "trades": 1,
                    "exposure": 1.0,
                    "bars": s.bars,
                }
            )
        return _total(per_fold)


def _rank_key(result: Mapping[str, Any]) -> tuple[float, float]:
    return (-round(result["log_growth"], 12), result["turnover_per_year"])


def search_policy(
    stretches: Sequence[Stretch],
    *,
    fee_bps: float,
    slippage_bps: float,
    plain: DecisionPolicy,
    allow_short: bool = False,
    candidates: Sequence[DecisionPolicy] | None = None,
    cache: dict[tuple[Any, ...], dict[str, float]] | None = None,
) -> PolicySearch:
    """Score every candidate on every stretch; the best by :data:`OBJECTIVE` is chosen.

    Args:
        stretches: the validation folds' out-of-fold signals (:func:`make_stretch`).
        fee_bps, slippage_bps: the cost assumption, per unit of traded notional.
        plain: the plain threshold rule, reported beside the chosen policy.
        allow_short: search long/flat/short policies instead of long/flat.
        candidates: override the grid (tests).
        cache: scores already computed, keyed by (policy, stretch name, bars, last price
            time); filled in (the walk-forward backtest re-searches over the same stretches).
    """
    if not stretches:
        raise ValueError("no validation stretches to search a policy on")
    grid = (
        list(candidates) if candidates is not None else candidate_policies(allow_short=allow_short)
    )
    cache = {} if cache is None else cache
    results = []
    for policy in grid:
        per_fold = []
        for stretch in stretches:
            key: tuple[Any, ...] = (policy, stretch.name, stretch.bars, stretch.last_price_time)
            key += (fee_bps, slippage_bps)
            if key not in cache:
                cache[key] = score(policy, stretch, fee_bps=fee_bps, slippage_bps=slippage_bps)
            per_fold.append(cache[key])
        results.append((policy, _total(per_fold)))
    best = min(range(len(results)), key=lambda i: (_rank_key(results[i][1]), i))
    return PolicySearch(
        chosen=results[best][0],
        plain=plain,
        stretches=tuple(stretches),
        results=tuple(results),
        fee_bps=float(fee_bps),
        slippage_bps=float(slippage_bps),
    )
