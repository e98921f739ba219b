"""Writing a backtest down: per-bar CSV, JSON report, PNG figure and a short text table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backtest._backtest import BacktestResult

BARS_FILE = "bars.csv"
REPORT_FILE = "report.json"
FIGURE_FILE = "backtest.png"

_ROWS: tuple[tuple[str, str, str], ...] = (
    # (label, Stats field, format)
    ("total return", "total_return", "pct"),
    ("CAGR", "cagr", "pct"),
    ("annual volatility", "annual_volatility", "pct"),
    ("Sharpe", "sharpe", "num"),
    ("Sortino", "sortino", "num"),
    ("max drawdown", "max_drawdown", "pct"),
    ("max DD duration (h)", "max_drawdown_duration_hours", "int"),
    ("trades", "trades", "int"),
    ("win rate", "win_rate", "pct"),
    ("avg trade", "avg_trade_return", "pct"),
    ("exposure", "exposure", "pct"),
    ("turnover (x equity)", "turnover", "num"),
    ("fees + slippage paid", "costs", "pct"),
)


def _fmt(value: float | int | None, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{value:.0f}"
    return f"{value:.3f}"


def summary_table(result: BacktestResult) -> str:
    """The policy, the plain threshold and buy-and-hold (after and before costs) and cash, one
    headline number per line, then the reading generated from the figures."""
    from backtest._stats import COMPARISON_LINES as names

    headers: tuple[str, ...] = ("policy", "(no costs)", "plain", "(no costs)", "buy&hold")
    headers += ("(no costs)", "cash")
    lines_stats = [result.comparison[n] for n in names] if result.comparison else []
    if not lines_stats:
        lines_stats, headers = [result.strategy, result.buy_and_hold], ("strategy", "buy&hold")
    columns = []
    for stats in lines_stats:
        values = stats.to_dict()
        values["costs"] = stats.fees_paid + stats.slippage_paid
        columns.append(values)
    first, last = result.range
    width = 12
    lines = [
        f"backtest {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC, {result.strategy.bars} "
        f"bars, model {result.label}, costs {result.fee_bps:g}+{result.slippage_bps:g} "
        "bps per change",
        f"policy: {result.policy.describe()} ({result.policy_source}); plain: long when "
        f"P(up) >= {result.long_threshold:g}",
        f"{'':<22}" + "".join(f"{h:>{width}}" for h in headers),
    ]
    for label, key, kind in _ROWS:
        lines.append(f"{label:<22}" + "".join(f"{_fmt(c[key], kind):>{width}}" for c in columns))
    return "\n".join([*lines, *result.reading()])


def _pct(value: float) -> str:
    return f"{100 * value:+.1f} %"


def reading(result: BacktestResult) -> list[str]:
    """Sentences stating what the figures say (generated, so they cannot go stale)."""
    lines = result.comparison
    if not lines:
        return []
    policy, policy_free = lines["policy"], lines["policy_before_costs"]
    plain, plain_free = lines["plain_threshold"], lines["plain_threshold_before_costs"]
    hold = lines["buy_and_hold_after_costs"]
    costs = f"{result.fee_bps:g} + {result.slippage_bps:g} bps a change"
    out = [
        f"After costs ({costs}) the policy returned {_pct(policy.total_return)}, against "
        f"{_pct(plain.total_return)} for the plain {result.long_threshold:g} threshold, "
        f"{_pct(hold.total_return)} for buy-and-hold and +0.0 % for cash.",
        f"After costs it does {'better' if policy.total_return > 0 else 'worse'} than cash and "
        f"{'better' if policy.total_return > hold.total_return else 'worse'} than buy-and-hold.",
        f"Before costs the policy returned {_pct(policy_free.total_return)} and the plain "
        f"threshold {_pct(plain_free.total_return)}; costs paid: policy "
        f"{100 * (policy.fees_paid + policy.slippage_paid):.1f} % of the starting equity, plain "
        f"threshold {100 * (plain.fees_paid + plain.slippage_paid):.1f} %.",
    ]
    if result.policy == result.plain_policy:
        out.append(f"The policy is the plain threshold ({result.policy_source}).")
    else:
        ratio = (
            f"1/{plain.turnover_per_year / policy.turnover_per_year:.1f} of the plain threshold's"
            if policy.turnover_per_year > 0
            else "none at all"
        )
        out.append(
            f"Turnover per year: policy {policy.turnover_per_year:.1f} x equity ({policy.trades} "
            f"trades, exposure {100 * policy.exposure:.0f} %), plain threshold "
            f"{plain.turnover_per_year:.1f} x ({plain.trades} trades, exposure "
            f"{100 * plain.exposure:.0f} %): {ratio}."
        )
    return out


def plot(result: BacktestResult, path: Path) -> None:
    """Equity of every line (log scale), drawdowns, and the position over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = result.bars
    ts = bars["timestamp"]
    fig, axes = plt.subplots(
        3, 1, figsize=(12, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1.5, 1]}
    )
    equity_ax, drawdown_ax, position_ax = axes
    for column, color, style, label in (
        ("equity", "tab:blue", "-", "policy, after costs"),
        ("equity_before_costs", "tab:blue", ":", "policy, before costs"),
        ("plain_equity", "tab:red", "-", f"plain {result.long_threshold:g} threshold, after costs"),
        ("plain_equity_before_costs", "tab:red", ":", "plain threshold, before costs"),
        ("buy_and_hold_equity", "tab:orange", "-", "buy and hold"),
    ):
        if column in bars:
            equity_ax.plot(
                ts, bars[column], color=color, linestyle=style, linewidth=1.0, label=label
            )
    equity_ax.axhline(1.0, color="grey", linewidth=0.8, label="cash")
    equity_ax.set_yscale("log")
    equity_ax.set_ylabel("equity (start = 1)")
    equity_ax.legend(loc="upper left", fontsize=8)
    equity_ax.set_title(
        f"{result.label}: fees {result.fee_bps:g} bps + slippage "
        f"{result.slippage_bps:g} bps per position change\npolicy: {result.policy.describe()}",
        fontsize=9,
    )
    drawdown_ax.fill_between(
        ts, bars["drawdown"], 0, color="tab:blue", alpha=0.4, linewidth=0, label="policy"
    )
    drawdown_ax.plot(
        ts, bars["buy_and_hold_drawdown"], color="tab:orange", linewidth=0.8, label="buy and hold"
    )
    drawdown_ax.set_ylabel("drawdown")
    drawdown_ax.legend(loc="lower left")
    position_ax.fill_between(
        ts,
        bars["position"],
        0,
        step="post",
        color="tab:blue",
        alpha=0.25,
        linewidth=0,
        label="position",
    )
    week = bars["position"].rolling(24 * 7, min_periods=1).mean()
    position_ax.plot(ts, week, color="black", linewidth=0.8, label="7-day mean position")
    position_ax.set_ylabel("position")
    position_ax.set_ylim(-1.1, 1.1)
    position_ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(
    result: BacktestResult, directory: Path, *, plot_figure: bool = True
) -> dict[str, Path]:
    """Write the CSV, the JSON report and (optionally) the PNG; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"bars": directory / BARS_FILE, "report": directory / REPORT_FILE}
    bars = result.bars.copy()
    bars["timestamp"] = bars["timestamp"].map(lambda t: t.isoformat())
    bars.to_csv(paths["bars"], index=False, float_format="%.12g")
    paths["report"].write_text(json.dumps(result.report(), indent=2, allow_nan=False) + "\n")
    if plot_figure:
        paths["figure"] = directory / FIGURE_FILE
        plot(result, paths["figure"])
    return paths
