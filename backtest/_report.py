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
    """Strategy vs buy-and-hold, one headline number per line."""
    columns = []
    for stats in (result.strategy, result.buy_and_hold):
        values = stats.to_dict()
        values["costs"] = stats.fees_paid + stats.slippage_paid
        columns.append(values)
    first, last = result.range
    lines = [
        f"backtest {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC, {result.strategy.bars} "
        f"bars, model {result.label}, costs {result.fee_bps:g}+{result.slippage_bps:g} "
        "bps per change",
        f"{'':<22}{'strategy':>12}{'buy&hold':>12}",
    ]
    for label, key, kind in _ROWS:
        lines.append(
            f"{label:<22}{_fmt(columns[0][key], kind):>12}{_fmt(columns[1][key], kind):>12}"
        )
    return "\n".join(lines)


def plot(result: BacktestResult, path: Path) -> None:
    """Equity (strategy vs buy-and-hold, log scale), drawdowns, and the position over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = result.bars
    ts = bars["timestamp"]
    fig, axes = plt.subplots(
        3, 1, figsize=(12, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1.5, 1]}
    )
    equity_ax, drawdown_ax, position_ax = axes
    equity_ax.plot(
        ts, bars["equity"], color="tab:blue", linewidth=1.0, label="strategy (after costs)"
    )
    equity_ax.plot(
        ts, bars["buy_and_hold_equity"], color="tab:orange", linewidth=1.0, label="buy and hold"
    )
    equity_ax.set_yscale("log")
    equity_ax.set_ylabel("equity (start = 1)")
    equity_ax.legend(loc="upper left")
    equity_ax.set_title(
        f"{result.label}: fees {result.fee_bps:g} bps + slippage "
        f"{result.slippage_bps:g} bps per position change"
    )
    drawdown_ax.fill_between(
        ts, bars["drawdown"], 0, color="tab:blue", alpha=0.4, linewidth=0, label="strategy"
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
