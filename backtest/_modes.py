"""The two ways to get honest signals: a stored model after its training period, or walk-forward."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtest._backtest import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS, Backtest, BacktestResult
from backtest._schedule import PolicySchedule, walk_forward_schedule
from backtest._service import PredictClient, parity, service_probabilities
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
from features import TIMESTAMP_COLUMN, WARMUP_BARS
from policy import PLAIN_SOURCE, DecisionPolicy, policy_from_metadata
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


def _stored_policy(info: dict[str, Any], loaded: Any) -> tuple[DecisionPolicy, str]:
    """The served or stored model's decision policy and its source (plain for old models)."""
    if loaded is not None:
        return policy_from_metadata(loaded.metadata)
    summary = info.get("policy")
    if not isinstance(summary, dict):  # a service of a version before policies
        return DecisionPolicy.plain(float(info["threshold"])), PLAIN_SOURCE
    fields = ("entry", "exit", "min_hold_bars", "allow_short", "short_entry", "short_exit")
    rule = {k: summary[k] for k in fields if summary.get(k) is not None}
    return DecisionPolicy.from_dict(rule), str(summary.get("source", "served"))


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
    service: PredictClient | None = None,
    window_bars: int = WARMUP_BARS + 1,
    progress: bool = False,
) -> BacktestResult:
    """Trade a stored model (:mod:`artifact`) over candles after its training period.

    Args:
        candles: the candles to trade (earlier history is used only to warm up features).
        model_tag: ``name:version``; default: the ``production`` version, else the newest (with
            ``service``: the model the service answers with, which must equal ``model_tag``
            when both are given).
        start: first traded bar (open time); default and minimum: the first bar whose return
            the model never saw (see :func:`backtest._signals.earliest_out_of_sample_start`).
        end: last traded bar (default: the last candle).
        threshold: trade the plain rule, long when P(up) >= threshold, instead of the
            model's stored decision policy (so do ``allow_short`` and ``short_threshold``);
            the plain rule at the model's stored threshold is always reported beside it.
        service: take P(up) from this running service (``client.HttpClient`` or
            ``client.GrpcClient``) instead of the local model, one ``window_bars`` window per
            signal bar; if the model is also in the local store, ``details["service_parity"]``
            compares the two (see :func:`backtest._service.parity`).
        window_bars: candles per window sent to the service.

    Raises:
        OutOfSampleError: ``start`` lies in the model's training period.
        ModelContractError: the model is missing or does not match this code's features.
    """
    from artifact import ModelContractError, load_model

    started = time.perf_counter()
    loaded = None
    if service is not None:
        info = service.model_info()
        if model_tag and info["model_tag"] != model_tag:
            raise ModelContractError(
                f"the service serves {info['model_tag']}, not the requested {model_tag}"
            )
        try:
            loaded = load_model(info["model_tag"])
        except ModelContractError:
            loaded = None  # served model not in the local store: no offline comparison
    else:
        loaded = load_model(model_tag)
        info = loaded.metadata | {"model_tag": loaded.tag}
    load_seconds = time.perf_counter() - started
    tag = str(info["model_tag"])
    horizon = int(info["label_horizon"])
    if int(info.get("bar_interval_s", 3600)) != 3600:
        raise ValueError(
            f"model {tag} was trained on {info.get('bar_interval')} bars; the backtest trades "
            "hourly bars (fills, annualisation with 8760 bars a year)"
        )
    train_range = parse_range(info["train_range"], "train_range")
    earliest = earliest_out_of_sample_start(train_range[1], horizon)
    first_bar = earliest if start is None else pd.Timestamp(start)
    if first_bar.tzinfo is None:
        raise ValueError(f"start {start!r} has no UTC offset (naive timestamps are rejected)")
    check_out_of_sample(first_bar, train_range=train_range, label_horizon=horizon)
    plain_rule = threshold is not None or allow_short or short_threshold is not None
    stored_policy, stored_source = _stored_policy(info, loaded)
    make_backtest = partial(
        Backtest,
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        threshold=float(info["threshold"]) if threshold is None else threshold,
        allow_short=allow_short,
        short_threshold=short_threshold,
        policy=None if plain_rule else stored_policy,
        policy_source=None if plain_rule else stored_source,
    )
    details: dict[str, Any] = {
        "mode": "stored_model",
        "label_horizon": horizon,
        "train_range": list(info["train_range"]),
        "holdout_range": list(info["holdout_range"]),
        "earliest_out_of_sample_start": earliest.isoformat(),
        "model_data_sha256": info.get("data_sha256"),
        **_data_details(candles),
    }
    timings = {"load_model": load_seconds}

    offline = None
    if loaded is not None:
        signals = predict_all(candles.frame, loaded.model.predict_proba)
        offline = signals.probability_up
        timings.update(features=signals.feature_seconds, predict=signals.predict_seconds)
    probability = offline
    if service is not None:
        probe = make_backtest(candles.frame, np.full(len(candles.frame), np.nan))
        first_row, last_row = probe.rows(first_bar, end)
        signal_rows = np.arange(first_row - 1, last_row + 1)  # + the last bar, for the CSV
        served = service_probabilities(
            probe.candles, service, rows=signal_rows, window_bars=window_bars, progress=progress
        )
        if served.model_tag != tag:
            raise ModelContractError(f"the service answered with {served.model_tag}, not {tag}")
        probability = served.probability_up
        timings["service"] = served.seconds
        details["predictions"] = (
            f"served: {served.requests} predict_batch calls of <= 64 windows of {window_bars} "
            "candles each"
        )
        if loaded is not None and offline is not None:
            details["service_parity"] = parity(
                probe.candles,
                served.probability_up,
                offline,
                rows=signal_rows,
                window_bars=window_bars,
                predict_proba=loaded.model.predict_proba,
                policy=probe.plain if plain_rule else stored_policy,
            )
    assert probability is not None
    started = time.perf_counter()
    result = make_backtest(candles.frame, probability).run(
        start=first_bar, end=end, model_tag=tag, details=details
    )
    timings["simulate_and_stats"] = time.perf_counter() - started
    result.details["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
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
    search_policy: bool = True,
    progress: bool = False,
) -> BacktestResult:
    """Retrain with ``training.train.fit_direction_model`` before every ``test_bars`` window.

    The decision policy of each window is searched on the earlier windows' out-of-sample
    signals only (:mod:`backtest._schedule`; the first window trades the plain threshold);
    ``search_policy=False`` trades the plain threshold throughout. The plain threshold is
    reported beside it either way.

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
    stamps = probe.candles[TIMESTAMP_COLUMN]
    windows = [
        (int(stamps.searchsorted(f.trade_first)), int(stamps.searchsorted(f.trade_last)))
        for f in walk.folds
    ]
    schedule: PolicySchedule | None = None
    searches: list[dict[str, Any]] = []
    if search_policy:
        schedule, searches = walk_forward_schedule(
            probe.candles,
            walk.probability_up,
            windows,
            plain=probe.plain,
            fee_bps=fee_bps,
            slippage_bps=slippage_bps,
            allow_short=allow_short or config.allow_short,
        )
    search_seconds = time.perf_counter() - started
    started = time.perf_counter()
    backtest = Backtest(
        probe.candles,
        walk.probability_up,
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        threshold=config.threshold,
        allow_short=allow_short,
        short_threshold=short_threshold,
        policy=schedule,
        policy_source=(
            "re-searched before each window on the earlier windows' out-of-sample signals"
            if schedule is not None
            else None
        ),
    )
    details: dict[str, Any] = {
        "mode": "walk_forward",
        "label_horizon": config.label_horizon,
        "test_bars": test_bars,
        "min_train_rows": min_train_rows,
        "window": "expanding" if max_train_rows is None else f"sliding ({max_train_rows} rows)",
        "train_config": config.to_dict(),
        "folds": [fold.to_dict() for fold in walk.folds],
        "policy_searches": searches,
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
        "policy_search": round(search_seconds, 3),
        "predict": round(walk.predict_seconds, 3),
        "simulate_and_stats": round(time.perf_counter() - started, 3),
    }
    return result
