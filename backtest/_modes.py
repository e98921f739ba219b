"""The two ways to get honest signals: a stored model after its training period, or walk-forward."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

import pandas as pd

from backtest._backtest import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS, Backtest, BacktestResult
from backtest._signals import (
    check_out_of_sample,
    earliest_out_of_sample_start,
    parse_range,
    predict_all,
)
from backtest._walkforward import (
    DEFAULT_MIN_TRAIN_ROWS,
    DEFAULT_TEST_BARS,
    walk_forward_probabilities,
)
from features import TIMESTAMP_COLUMN
from training.data import Candles

if TYPE_CHECKING:
    from training.train import TrainConfig


def _data_details(candles: Candles) -> dict[str, Any]:
    frame = candles.frame
    return {
        "data_source": candles.report.source,
        "data_sha256": candles.sha256,
        "data_range": [
            frame[TIMESTAMP_COLUMN].iloc[0].isoformat(),
            frame[TIMESTAMP_COLUMN].iloc[-1].isoformat(),
        ],
        "data_gaps": len(candles.report.gaps),
    }


def backtest_stored_model(
    candles: Candles,
    *,
    model_tag: str | None = None,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    fee_bps: float = DEFAULT_FEE_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
    threshold: float | None = None,
    allow_short: bool = False,
    short_threshold: float | None = None,
) -> BacktestResult:
    """Trade a stored model (``training.store``) over candles after its training period.

    Args:
        candles: the candles to trade (earlier history is used only to warm up features).
        model_tag: ``name:version``; default: the ``production`` version, else the newest.
        start: first traded bar (open time); default and minimum: the first bar whose return
            the model never saw (see :func:`backtest._signals.earliest_out_of_sample_start`).
        end: last traded bar (default: the last candle).
        threshold: long when P(up) >= threshold (default: the model's stored threshold).

    Raises:
        OutOfSampleError: ``start`` lies in the model's training period.
        ModelContractError: the model is missing or does not match this code's features.
    """
    from training.store import load_model

    started = time.perf_counter()
    loaded = load_model(model_tag)
    load_seconds = time.perf_counter() - started
    horizon = loaded.label_horizon
    train_range = parse_range(loaded.metadata["train_range"], "train_range")
    earliest = earliest_out_of_sample_start(train_range[1], horizon)
    first_bar = earliest if start is None else pd.Timestamp(start)
    if first_bar.tzinfo is None:
        raise ValueError(f"start {start!r} has no UTC offset (naive timestamps are rejected)")
    check_out_of_sample(first_bar, train_range=train_range, label_horizon=horizon)

    signals = predict_all(candles.frame, loaded.model.predict_proba)
    started = time.perf_counter()
    backtest = Backtest(
        candles.frame,
        signals.probability_up,
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        threshold=loaded.model.threshold if threshold is None else threshold,
        allow_short=allow_short,
        short_threshold=short_threshold,
    )
    details: dict[str, Any] = {
        "mode": "stored_model",
        "label_horizon": horizon,
        "train_range": list(loaded.metadata["train_range"]),
        "holdout_range": list(loaded.metadata["holdout_range"]),
        "earliest_out_of_sample_start": earliest.isoformat(),
        "model_data_sha256": loaded.metadata.get("data_sha256"),
        **_data_details(candles),
    }
    result = backtest.run(start=first_bar, end=end, model_tag=loaded.tag, details=details)
    result.details["timings_seconds"] = {
        "load_model": round(load_seconds, 3),
        "features": round(signals.feature_seconds, 3),
        "predict": round(signals.predict_seconds, 3),
        "simulate_and_stats": round(time.perf_counter() - started, 3),
    }
    return result


def backtest_walk_forward(
    candles: Candles,
    *,
    config: TrainConfig | None = None,
    test_bars: int = DEFAULT_TEST_BARS,
    min_train_rows: int = DEFAULT_MIN_TRAIN_ROWS,
    max_train_rows: int | None = None,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    fee_bps: float = DEFAULT_FEE_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
    allow_short: bool = False,
    short_threshold: float | None = None,
    progress: bool = False,
) -> BacktestResult:
    """Retrain with ``training.train.fit_direction_model`` before every ``test_bars`` window.

    Args:
        candles: the whole history (training and trading both come from it).
        config: training settings (label horizon, epochs, seed, threshold...); default
            ``TrainConfig()``.
        test_bars, min_train_rows, max_train_rows: see
            :func:`backtest._walkforward.walk_forward_probabilities`.
        start, end: first and last traded bar (default: as early as ``min_train_rows``
            allows, and the last candle).
    """
    from training.train import TrainConfig, fit_direction_model

    config = TrainConfig() if config is None else config
    probe = Backtest(
        candles.frame,
        pd.Series(dtype="float64", index=pd.DatetimeIndex([], tz="UTC")),
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        threshold=config.threshold,
        allow_short=allow_short,
        short_threshold=short_threshold,
    )
    first_row, last_row = probe.rows(start, end)
    walk = walk_forward_probabilities(
        probe.candles,
        fit=partial(fit_direction_model, config=config),
        label_horizon=config.label_horizon,
        test_bars=test_bars,
        min_train_rows=min_train_rows,
        max_train_rows=max_train_rows,
        first_row=first_row if start is not None else None,
        last_row=last_row,
        progress=progress,
    )
    started = time.perf_counter()
    backtest = Backtest(
        probe.candles,
        walk.probability_up,
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        threshold=config.threshold,
        allow_short=allow_short,
        short_threshold=short_threshold,
    )
    stamps = probe.candles[TIMESTAMP_COLUMN]
    details: dict[str, Any] = {
        "mode": "walk_forward",
        "label_horizon": config.label_horizon,
        "test_bars": test_bars,
        "min_train_rows": min_train_rows,
        "window": "expanding" if max_train_rows is None else f"sliding ({max_train_rows} rows)",
        "train_config": config.to_dict(),
        "folds": [fold.to_dict() for fold in walk.folds],
        **_data_details(candles),
    }
    result = backtest.run(
        start=stamps.iloc[walk.first_row],
        end=stamps.iloc[walk.last_row],
        model_tag=None,
        details=details,
    )
    result.details["timings_seconds"] = {
        "features": round(walk.feature_seconds, 3),
        "fit": round(walk.fit_seconds, 3),
        "predict": round(walk.predict_seconds, 3),
        "simulate_and_stats": round(time.perf_counter() - started, 3),
    }
    return result
