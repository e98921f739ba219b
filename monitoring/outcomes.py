"""Concept drift: logged predictions against what the market then did (``btcusdt outcomes``,
or ``python -m monitoring.outcomes``).

Joins the service's prediction log with candles: the realised outcome of a prediction made at the
close of candle t is ``features.make_labels`` at t (did the close ``horizon_bars`` later end
above t's close), known only once that later candle exists. Reports accuracy, ROC-AUC, Brier
score and log loss overall and over a rolling window of the latest resolved predictions, next to
the model's own holdout figures, and says whether retraining is due.

Retraining is advised when, over the latest window, the model ranks no better than chance
(ROC-AUC below ``--min-auc``, 0.5) or its probabilities are no better than a constant (Brier
score above the holdout's majority baseline, the training up-share as a constant P(up)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import numpy as np
import pandas as pd

from backtest import Backtest, BacktestResult
from backtest._backtest import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS
from cli import existing_file, folder, run
from features import make_labels
from monitoring.clickhouse_source import ClickHouseSource, Selection, is_clickhouse_url
from monitoring.prediction_log import (
    CANDLE_TIMESTAMP,
    PredictionLogError,
    latest_model_tag,
    log_options,
    prediction_source,
    read_predictions,
)
from policy import policy_from_metadata
from training.evaluate import classification_metrics

RESOLVED, PENDING, NO_CANDLES = "resolved", "pending", "no candles"
CONSTANT_BRIER = 0.25
"""Brier score of a constant P(up) = 0.5: the fallback bar when the model's metadata is absent."""


def realised_outcomes(predictions: pd.DataFrame, candles: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` plus ``outcome`` (1.0 up, 0.0 not up, NaN unknown) and ``status``.

    ``status`` is ``resolved``; ``pending`` (the candle ``horizon_bars`` later is not in
    ``candles`` yet); or ``no candles`` (the predicted candle is not in ``candles``, or the
    outcome bar lies across a gap in them).
    """
    out = predictions.copy()
    out["outcome"] = np.nan
    out["status"] = NO_CANDLES
    stamps = pd.DatetimeIndex(candles["timestamp"])
    last = stamps[-1] if len(stamps) else None
    for horizon in sorted(out["horizon_bars"].astype(int).unique()):
        labels = make_labels(candles, horizon)
        rows = out["horizon_bars"].astype(int) == horizon
        at = pd.DatetimeIndex(out.loc[rows, CANDLE_TIMESTAMP])
        outcome = labels.reindex(at).to_numpy()
        known = at.isin(stamps)
        waiting = known & (last is not None) & (at + horizon * pd.Timedelta(hours=1) > last)
        out.loc[rows, "outcome"] = outcome
        out.loc[rows, "status"] = np.where(
            ~np.isnan(outcome), RESOLVED, np.where(waiting, PENDING, NO_CANDLES)
        )
    return out


def score(resolved: pd.DataFrame, threshold: float) -> dict[str, float]:
    """``training.evaluate.classification_metrics`` of resolved predictions (+ ``rows``).

    Accuracy is of the direction call ``P(up) >= threshold``, as on the holdout: the logged
    ``signal`` is a target position (the decision policy's, from the client's position), not a
    direction call; :func:`policy_pnl` scores what following it earned.
    """
    metrics = classification_metrics(
        resolved["outcome"].to_numpy(),
        resolved["probability_up"].to_numpy(),
        threshold=threshold,
    )
    return {"rows": len(resolved), **metrics}


def policy_pnl(
    resolved: pd.DataFrame, candles: pd.DataFrame, reference: dict[str, Any]
) -> BacktestResult | None:
    """What following the model's decision policy on the logged P(up) realised: the backtest
    engine (next-open fills, the policy's cost assumption) over the bar after each resolved
    prediction, against the plain threshold, buy-and-hold and cash (``None``: too few bars)."""
    probability = resolved.groupby(CANDLE_TIMESTAMP)["probability_up"].last().sort_index()
    stamps = pd.DatetimeIndex(candles["timestamp"])
    rows = stamps.get_indexer(pd.DatetimeIndex(probability.index))
    rows = rows[(rows >= 0) & (rows + 1 < len(stamps))]
    if len(rows) < 2:
        return None
    backtest = Backtest(
        candles,
        probability,
        fee_bps=reference.get("fee_bps", DEFAULT_FEE_BPS),
        slippage_bps=reference.get("slippage_bps", DEFAULT_SLIPPAGE_BPS),
        threshold=reference.get("threshold", 0.5),
        policy=reference.get("policy"),
        policy_source=reference.get("policy_source"),
    )
    return backtest.run(start=stamps[rows[0] + 1], end=stamps[rows[-1] + 1])


def rolling_by_day(resolved: pd.DataFrame, *, window: int, threshold: float) -> pd.DataFrame:
    """Per candle day: the metrics of the latest ``window`` resolved predictions up to its end
    (days before ``window`` predictions exist are left out)."""
    days = resolved[CANDLE_TIMESTAMP].dt.floor("D")
    rows = []
    for day in sorted(days.unique()):
        end = int((days <= day).sum())
        if end < window:
            continue
        latest = resolved.iloc[end - window : end]
        rows.append({"day": day.date(), **score(latest, threshold)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Advice:
    """Whether to retrain, and why."""

    retrain: bool
    reasons: list[str]


def retrain_advice(latest: dict[str, float], *, min_auc: float, max_brier: float) -> Advice:
    """Retrain when the latest window ranks no better than chance or is no better calibrated
    than a constant probability."""
    reasons = []
    if not math.isnan(latest["roc_auc"]) and latest["roc_auc"] < min_auc:
        reasons.append(f"ROC-AUC {latest['roc_auc']:.4f} < {min_auc}")
    if latest["brier"] > max_brier:
        reasons.append(f"Brier {latest['brier']:.4f} > {max_brier:.4f} (a constant P(up) does)")
    return Advice(retrain=bool(reasons), reasons=reasons)


def model_reference(model_tag: str) -> dict[str, Any]:
    """Threshold, holdout metrics and decision policy (with its cost assumption) from the
    stored model's metadata ({} if not in the store)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        metadata: dict[str, Any] = dict(bentoml.models.get(model_tag).info.metadata)
    except NotFound:
        return {}
    holdout = dict(metadata.get("metrics", {})).get("holdout", {})
    policy, source = policy_from_metadata(metadata)
    decision = dict(metadata.get("decision_policy", {}))
    costs = {k: float(decision[k]) for k in ("fee_bps", "slippage_bps") if k in decision}
    return {
        "threshold": float(metadata["threshold"]),
        "holdout": holdout,
        "policy": policy,
        "policy_source": source,
        **costs,
    }


def plot_rolling(rolling: pd.DataFrame, holdout: dict[str, Any], path: Path, *, title: str) -> Path:
    """Accuracy, ROC-AUC and Brier score per day, with the holdout's figures as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    for ax, metric in zip(axes, ("accuracy", "roc_auc", "brier"), strict=True):
        ax.plot(pd.to_datetime(rolling["day"]), rolling[metric], label="served, rolling")
        model = holdout.get("model", {}).get(metric)
        if model is not None:
            ax.axhline(model, color="tab:green", linestyle="--", label="model, holdout")
        majority = holdout.get("majority", {}).get(metric)
        if majority is not None:
            ax.axhline(majority, color="tab:red", linestyle=":", label="majority baseline")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _predictions(args: Any) -> tuple[str, pd.DataFrame]:
    """The model and its predictions from the CLI's source (prediction log or ClickHouse)."""
    source = prediction_source(args)
    if isinstance(source, str):
        store = ClickHouseSource(source)
        model_tag = args.model_tag or store.latest_model_tag()
        return model_tag, store.predictions_frame(Selection(model_tag, args.since, args.until))
    predictions = read_predictions(
        source, model_tag=args.model_tag, since=args.since, until=args.until
    )
    model_tag = args.model_tag or latest_model_tag(predictions)
    return model_tag, predictions[predictions["model_tag"] == model_tag]


class CandleSource(click.ParamType):
    """``--data``: an existing candle file, or a ``clickhouse://`` URL (its ``candles`` table)."""

    name = "FILE|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if is_clickhouse_url(value):
            return value
        return existing_file.convert(value, param, ctx)


@click.command(
    "outcomes",
    help="Concept drift: the service's logged predictions scored against realised outcomes "
    "from candles (rolling accuracy / ROC-AUC / Brier), with retraining advice.",
)
@log_options
@click.option(
    "--data",
    type=CandleSource(),
    help="candles: a CSV/Parquet file (as training.data.load_candles reads) or "
    "clickhouse://HOST:PORT/DATABASE (its candles table); default: the bundled BTCUSDT 1h "
    "candles",
)
@click.option(
    "--window",
    type=click.IntRange(min=2),
    default=720,
    show_default=True,
    help="resolved predictions in the rolling window",
)
@click.option(
    "--min-auc",
    type=float,
    default=0.5,
    show_default=True,
    help="advise retraining below this rolling ROC-AUC",
)
@click.option(
    "--out",
    type=folder,
    default=Path("reports/outcomes"),
    show_default=True,
    help="folder for the CSVs and PNG",
)
@click.option("--fail-on-retrain", is_flag=True, help="exit 1 when retraining is advised")
def outcomes_command(**options: Any) -> int:
    """``btcusdt outcomes`` / ``python -m monitoring.outcomes``."""
    args = SimpleNamespace(**options)
    from training.prepare import load_data

    try:
        model_tag, predictions = _predictions(args)
        if is_clickhouse_url(args.data):
            candles = ClickHouseSource(args.data).candles()
        else:
            candles = load_data(args.data).frame
    except (PredictionLogError, OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    reference = model_reference(model_tag)
    threshold = reference.get("threshold", 0.5)
    holdout = reference.get("holdout", {})
    max_brier = holdout.get("majority", {}).get("brier", CONSTANT_BRIER)

    joined = realised_outcomes(predictions, candles)
    resolved = joined[joined["status"] == RESOLVED]
    counts = joined["status"].value_counts()
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes_csv = args.out / "outcomes.csv"
    columns = [CANDLE_TIMESTAMP, "probability_up", "signal", "horizon_bars", "outcome", "status"]
    joined[columns].to_csv(outcomes_csv, index=False)
    print(
        f"model {model_tag}: {len(joined)} predictions; "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in (RESOLVED, PENDING, NO_CANDLES))
    )
    if len(resolved) < 2 or resolved["outcome"].nunique() < 2:
        print(f"too few resolved predictions to score yet\nwrote {outcomes_csv}")
        return 0
    overall = score(resolved, threshold)
    window = min(args.window, len(resolved))
    latest = score(resolved.iloc[-window:], threshold)
    rolling = rolling_by_day(resolved, window=window, threshold=threshold)
    rolling_csv = args.out / "rolling.csv"
    rolling.to_csv(rolling_csv, index=False)
    png = plot_rolling(
        rolling,
        holdout,
        args.out / "rolling.png",
        title=f"{model_tag}: rolling {window} resolved predictions, per candle day",
    )
    table = pd.DataFrame(
        {
            "all resolved": overall,
            f"latest {window}": latest,
            "holdout (model)": holdout.get("model", {}),
            "holdout (majority)": holdout.get("majority", {}),
        }
    ).reindex(["rows", "accuracy", "roc_auc", "brier", "log_loss"])
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    pnl = policy_pnl(resolved, candles, reference)
    if pnl is not None:
        pnl_csv = args.out / "policy_pnl.csv"
        pnl.bars.to_csv(pnl_csv, index=False)
        print(f"\nfollowing the decision policy ({pnl.policy.describe()}; {pnl.policy_source}):")
        print("\n".join(pnl.reading()))
        print(f"wrote {pnl_csv}")
    advice = retrain_advice(latest, min_auc=args.min_auc, max_brier=max_brier)
    verdict = "RETRAIN: " + "; ".join(advice.reasons) if advice.retrain else "no retraining due"
    print(f"\n{verdict}\nwrote {outcomes_csv}\nwrote {rolling_csv}\nwrote {png}")
    return 1 if advice.retrain and args.fail_on_retrain else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitoring.outcomes``: the ``btcusdt outcomes`` command."""
    return run(outcomes_command, argv, prog_name="python -m monitoring.outcomes")


if __name__ == "__main__":
    raise SystemExit(main())
