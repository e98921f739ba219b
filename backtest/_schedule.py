"""Walk-forward decision policies: re-searched before each window on the earlier windows only.

Before window ``k`` the policy is chosen by :func:`training.policy_search.search_policy` on the
out-of-sample P(up) the walk-forward produced for windows ``1 .. k-1``, with no price after
window ``k``'s first signal bar. Window 1 has no earlier out-of-sample signals: without
evidence that any rule beats its costs, it stays in cash. :class:`PolicySchedule` then applies
each window's policy to its own bars, carrying the position (and how long it has been held)
across the window boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features import TIMESTAMP_COLUMN
from policy import DecisionPolicy


@dataclass(frozen=True)
class PolicySchedule:
    """One policy per stretch of a signal series: ``policies[k]`` decides from index
    ``starts[k]`` (``starts[0] == 0``) of the series :meth:`positions` is given; ``None``
    stays flat (cash)."""

    starts: tuple[int, ...]
    policies: tuple[DecisionPolicy | None, ...]
    labels: tuple[str, ...]
    sources: tuple[str, ...]

    @property
    def allow_short(self) -> bool:
        return any(p.allow_short for p in self.policies if p is not None)

    def positions(
        self,
        probability_up: np.ndarray,
        *,
        start_position: int = 0,
        start_bars_held: int | None = None,
    ) -> np.ndarray:
        """Each stretch's :meth:`policy.DecisionPolicy.positions`, the position and its
        holding time carried from one stretch into the next."""
        p = np.asarray(probability_up, dtype="float64")
        out = np.empty(len(p), dtype="int64")
        position, held = start_position, start_bars_held
        bounds = [*self.starts[1:], len(p)]
        for policy, first, stop in zip(self.policies, self.starts, bounds, strict=True):
            if policy is None:
                part = np.zeros(stop - first, dtype="int64")
                hold = 1
            else:
                part = policy.positions(
                    p[first:stop], start_position=position, start_bars_held=held
                )
                hold = policy.min_hold_bars
            out[first:stop] = part
            if len(part):
                changes = np.flatnonzero(part != part[-1])
                run = len(part) - (changes[-1] + 1 if len(changes) else 0)
                kept = not len(changes) and part[-1] == position
                held = (hold if held is None else held) + run if kept else run
                position = int(part[-1])
        return out

    def describe(self) -> str:
        rules = "; ".join(
            f"from {label}: {policy.describe() if policy else 'cash'}"
            for label, policy in zip(self.labels, self.policies, strict=True)
        )
        return f"re-searched before each walk-forward window ({rules})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": [
                {"from": label, "policy": policy.to_dict() if policy else "cash", "source": source}
                for label, policy, source in zip(
                    self.labels, self.policies, self.sources, strict=True
                )
            ]
        }


def walk_forward_schedule(
    candles: pd.DataFrame,
    probability_up: np.ndarray,
    windows: list[tuple[int, int]],
    *,
    plain: DecisionPolicy,
    fee_bps: float,
    slippage_bps: float,
    allow_short: bool,
) -> tuple[PolicySchedule, list[dict[str, Any]]]:
    """The policy of every window (traded candle rows ``(first, last)``), searched on the
    earlier windows' signals only; and what each search read (for the report).

    The schedule indexes the signal series of a backtest run from the first window's first
    traded bar (signal rows ``windows[0][0] - 1 ..``).
    """
    from training.policy_search import make_stretch, search_policy

    stamps = pd.DatetimeIndex(candles[TIMESTAMP_COLUMN])
    offset = windows[0][0] - 1
    starts: list[int] = []
    policies: list[DecisionPolicy | None] = []
    labels: list[str] = []
    sources: list[str] = []
    searches: list[dict[str, Any]] = []
    cache: dict[tuple[Any, ...], dict[str, float]] = {}
    for number, (first, _) in enumerate(windows, start=1):
        signal_bar = stamps[first - 1]
        stretches = []
        for k, (earlier_first, earlier_last) in enumerate(windows[: number - 1], start=1):
            rows = np.arange(earlier_first - 1, earlier_last)
            values = probability_up[rows]
            known = ~np.isnan(values)
            if known.sum() < 3:
                continue
            series = pd.Series(values[known], index=stamps[rows[known]])
            try:
                stretches.append(
                    make_stretch(f"window {k}", candles, series, last_price_time=signal_bar)
                )
            except ValueError:
                continue  # no bar of it has a return known by the signal bar
        starts.append(first - 1 - offset)
        labels.append(stamps[first].isoformat())
        if not stretches:
            policies.append(None)
            sources.append("cash: no earlier out-of-sample window to search a policy on")
            continue
        search = search_policy(
            stretches,
            fee_bps=fee_bps,
            slippage_bps=slippage_bps,
            plain=plain,
            allow_short=allow_short,
            cache=cache,
        )
        policies.append(search.chosen)
        sources.append(search.source)
        searches.append(
            {
                "window": number,
                "policy": search.chosen.to_dict(),
                "candidates": search.candidates,
                "search_range": [
                    stretches[0].signal_times[0].isoformat(),
                    max(s.last_price_time for s in stretches).isoformat(),
                ],
                "signal_bar": signal_bar.isoformat(),
                "validation_total_return": search.totals(search.chosen)["total_return"],
            }
        )
    schedule = PolicySchedule(tuple(starts), tuple(policies), tuple(labels), tuple(sources))
    return schedule, searches
