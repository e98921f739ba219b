"""Data drift of the logged predictions, per feature and per day (``btcusdt drift``).

Reads the service's prediction log (:mod:`monitoring.prediction_log`) and compares the logged
features with the served model's ``reference.json`` (:func:`monitoring.drift_stats.drift_table`):

- overall: every selected prediction at once;
- per day: day D (UTC date of the candles) covers the candles of the ``window_days`` days
  ending with D. Hourly features are smoothed over 14-50 bars, so a day's 24 rows are far from
  24 independent draws; a few days of rows read as drifted against a long training window much
  more often than independent rows would (see docs/monitoring.md, "Data drift").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import numpy as np
import pandas as pd

from artifact import REFERENCE_FILE, ModelContractError, read_reference
from cli import existing_file, folder, run
from features import FEATURE_NAMES
from monitoring.clickhouse_source import ClickHouseSource, DriftTables, Selection
from monitoring.drift_stats import PSI_MODERATE, PSI_SIGNIFICANT, drift_table
from monitoring.prediction_log import (
    CANDLE_TIMESTAMP,
    PredictionLogError,
    latest_model_tag,
    log_options,
    prediction_source,
    read_predictions,
)

LEVELS = ("stable", "moderate", "significant")
LEVELS_TO_FAIL_ON = ("never", "moderate", "significant")


def load_reference(model_tag: str) -> dict[str, Any]:
    """``reference.json`` of a stored model (:func:`artifact.read_reference`).

    Raises:
        PredictionLogError: the model is not in the store, was saved without a reference, or
            its reference is missing or corrupted.
    """
    try:
        profile = read_reference(model_tag)
    except ModelContractError as exc:
        raise PredictionLogError(f"{exc}; pass --reference") from exc
    if profile is None:
        raise PredictionLogError(
            f"model {model_tag!r} has no {REFERENCE_FILE} (saved before drift monitoring); "
            "retrain it or pass --reference"
        )
    return profile


def overall_drift(predictions: pd.DataFrame, profile: dict[str, Any]) -> pd.DataFrame:
    """One row per feature: ``psi``, ``ks``, ``level`` over every prediction, worst first."""
    table = drift_table(profile, predictions[list(FEATURE_NAMES)].to_numpy(), FEATURE_NAMES)
    frame = pd.DataFrame.from_dict(table, orient="index").rename_axis("feature").reset_index()
    frame.insert(1, "rows", len(predictions))
    return frame.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def daily_drift(
    predictions: pd.DataFrame,
    profile: dict[str, Any],
    *,
    window_days: int = 7,
    min_rows: int = 100,
) -> pd.DataFrame:
    """Long table ``day, feature, rows, psi, ks, level``, one row per candle day and feature.

    Day D is computed over the candles of days ``D - window_days + 1`` .. D; days with fewer than
    ``min_rows`` rows there get NaN statistics and level ``too few rows``.
    """
    if window_days < 1 or min_rows < 1:
        raise ValueError("window_days and min_rows must be >= 1")
    days = predictions[CANDLE_TIMESTAMP].dt.floor("D")
    values = predictions[list(FEATURE_NAMES)].to_numpy()
    rows = []
    for day in sorted(days.unique()):
        selected = (days > day - pd.Timedelta(days=window_days)) & (days <= day)
        n = int(selected.sum())
        table = drift_table(profile, values[selected.to_numpy()], FEATURE_NAMES)
        for name in FEATURE_NAMES:
            if n >= min_rows:
                psi, ks, level = table[name]["psi"], table[name]["ks"], table[name]["level"]
            else:
                psi, ks, level = np.nan, np.nan, "too few rows"
            rows.append(
                {
                    "day": day.date(),
                    "feature": name,
                    "rows": n,
                    "psi": psi,
                    "ks": ks,
                    "level": level,
                }
            )
    return pd.DataFrame(rows)


def day_summary(daily: pd.DataFrame) -> pd.DataFrame:
    """Per day: rows, features at each level and the feature with the largest PSI."""
    out = []
    for day, group in daily.groupby("day", sort=True):
        worst = group.loc[group["psi"].idxmax()] if group["psi"].notna().any() else None
        out.append(
            {
                "day": day,
                "rows": int(group["rows"].iloc[0]),
                **{level: int((group["level"] == level).sum()) for level in LEVELS[1:]},
                "worst_feature": worst["feature"] if worst is not None else "",
                "worst_psi": float(worst["psi"]) if worst is not None else np.nan,
            }
        )
    return pd.DataFrame(out)


def plot_daily_psi(daily: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Heat map of PSI, features x days (grey: too few rows), with the PSI thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    grid = daily.pivot(index="feature", columns="day", values="psi").reindex(FEATURE_NAMES)
    colours = ListedColormap(["#2e7d32", "#f9a825", "#c62828"])
    colours.set_bad("#cccccc")
    norm = BoundaryNorm([0.0, PSI_MODERATE, PSI_SIGNIFICANT, 1e9], colours.N)
    width = min(4 + 0.25 * grid.shape[1], 30)
    fig, ax = plt.subplots(figsize=(width, 7))
    image = ax.imshow(np.ma.masked_invalid(grid.to_numpy()), aspect="auto", cmap=colours, norm=norm)
    ax.set_yticks(range(len(grid.index)), grid.index, fontsize=7)
    step = max(1, grid.shape[1] // 20)
    ax.set_xticks(range(0, grid.shape[1], step), [str(d) for d in grid.columns[::step]])
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    bar = fig.colorbar(image, ax=ax, ticks=[PSI_MODERATE / 2, 0.175, 0.5])
    bar.ax.set_yticklabels(
        [f"stable < {PSI_MODERATE}", "moderate", f"significant > {PSI_SIGNIFICANT}"]
    )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def drift_tables(args: Any) -> tuple[str, DriftTables]:
    """The model and its drift tables from the CLI's source (a prediction log, or ClickHouse:
    the same figures, aggregated in SQL where it can be, :mod:`monitoring.clickhouse_source`)."""
    source = prediction_source(args)
    if isinstance(source, str):
        store = ClickHouseSource(source)
        model_tag = args.model_tag or store.latest_model_tag()
        profile = _profile(args, model_tag)
        selection = Selection(model_tag, args.since, args.until, args.keep_duplicates)
        tables = store.drift_tables(
            selection, profile, window_days=args.window_days, min_rows=args.min_rows
        )
        return model_tag, tables
    predictions = read_predictions(
        source,
        model_tag=args.model_tag,
        since=args.since,
        until=args.until,
        keep_duplicates=args.keep_duplicates,
    )
    model_tag = args.model_tag or latest_model_tag(predictions)
    predictions = predictions[predictions["model_tag"] == model_tag]
    profile = _profile(args, model_tag)
    first, last = predictions[CANDLE_TIMESTAMP].iloc[[0, -1]]
    tables = DriftTables(
        overall=overall_drift(predictions, profile),
        daily=daily_drift(
            predictions, profile, window_days=args.window_days, min_rows=args.min_rows
        ),
        rows=len(predictions),
        first=first,
        last=last,
    )
    return model_tag, tables


def _profile(args: Any, model_tag: str) -> dict[str, Any]:
    if args.reference:
        return json.loads(args.reference.read_text())
    return load_reference(model_tag)


@click.command(
    "drift",
    help="Data drift of the service's logged predictions against the model's training "
    "reference (PSI and KS per feature; overall and per day).",
)
@log_options
@click.option(
    "--reference",
    type=existing_file,
    help=f"reference profile JSON (default: the model's {REFERENCE_FILE} in the store)",
)
@click.option(
    "--window-days", type=int, default=7, show_default=True, help="days of candles behind each day"
)
@click.option(
    "--min-rows", type=int, default=100, show_default=True, help="fewest rows for a day's figure"
)
@click.option(
    "--keep-duplicates",
    is_flag=True,
    help="count every logged answer (default: one per candle and model)",
)
@click.option(
    "--out",
    type=folder,
    default=Path("reports/drift"),
    show_default=True,
    help="folder for the CSV and PNG",
)
@click.option(
    "--fail-on",
    type=click.Choice(LEVELS_TO_FAIL_ON),
    default="never",
    show_default=True,
    help="exit 1 when any feature's overall drift reaches this level (for cron/CI)",
)
def drift_command(**options: Any) -> int:
    """``btcusdt drift`` / ``python -m monitoring.drift``."""
    args = SimpleNamespace(**options)
    try:
        model_tag, tables = drift_tables(args)
    except (PredictionLogError, OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    overall, daily, rows = tables.overall, tables.daily, tables.rows
    summary = day_summary(daily)

    args.out.mkdir(parents=True, exist_ok=True)
    overall_csv = args.out / "drift_overall.csv"
    daily_csv = args.out / "drift_by_day.csv"
    overall.to_csv(overall_csv, index=False)
    daily.to_csv(daily_csv, index=False)
    span = f"{tables.first:%Y-%m-%d %H:%M} .. {tables.last:%Y-%m-%d %H:%M} UTC"
    png = plot_daily_psi(
        daily,
        args.out / "drift_by_day.png",
        title=f"PSI per feature and day ({args.window_days}-day windows), {model_tag}, {span}",
    )
    with pd.option_context("display.width", 120, "display.max_rows", 500):
        print(f"model {model_tag}: {rows} predictions, candles {span}")
        print("\noverall drift (PSI: < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant)")
        if rows < args.min_rows:
            print(f"(only {rows} rows: so few read as drift even without any)")
        print(overall.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"\nper day ({args.window_days}-day windows, >= {args.min_rows} rows)")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nwrote {overall_csv}\nwrote {daily_csv}\nwrote {png}")
    if args.fail_on != "never":
        worst = LEVELS.index(args.fail_on)
        if any(LEVELS.index(level) >= worst for level in overall["level"]):
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitoring.drift``: the ``btcusdt drift`` command."""
    return run(drift_command, argv, prog_name="python -m monitoring.drift")
