"""P(up) from a running service (``client.HttpClient`` / ``client.GrpcClient``) for a backtest.

Each signal bar is sent as one window: the ``window_bars`` candles ending at it, as a live
client would send them. A window that would span a gap in the data is not sent (the contract
rejects gaps), so that bar has no signal, exactly like the warm-up rows after a gap offline.
:func:`parity` then compares the served probabilities with the offline ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features import BAR_INTERVAL, OHLCV_COLUMNS, TIMESTAMP_COLUMN, compute_window_features
from policy import DecisionPolicy


class PredictClient(Protocol):
    """What the backtest needs from ``client.HttpClient`` / ``client.GrpcClient``."""

    def predict_batch(self, windows: list[pd.DataFrame]) -> list[dict[str, Any]]: ...

    def model_info(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ServiceSignals:
    """Served P(up) per candle row (NaN where not asked or no full window) and the cost."""

    probability_up: np.ndarray
    model_tag: str
    requests: int
    seconds: float


def window_start_rows(candles: pd.DataFrame, rows: np.ndarray, window_bars: int) -> np.ndarray:
    """First row of the gap-free ``window_bars`` window ending at each row (-1 where none)."""
    stamps = pd.DatetimeIndex(candles[TIMESTAMP_COLUMN])
    starts = np.asarray(rows) - window_bars + 1
    ok = starts >= 0
    span = stamps[np.asarray(rows)[ok]] - stamps[starts[ok]]
    ok[ok] = np.asarray(span == (window_bars - 1) * BAR_INTERVAL)
    return np.where(ok, starts, -1)


def service_probabilities(
    candles: pd.DataFrame,
    client: PredictClient,
    *,
    rows: np.ndarray,
    window_bars: int,
    batch_windows: int = 64,
    progress: bool = False,
) -> ServiceSignals:
    """Ask the service for P(up) at each of ``rows`` (candle rows), ``batch_windows`` per call.

    Raises:
        RuntimeError: the service answered for another bar or switched model mid-run.
    """
    started = time.perf_counter()
    probability = np.full(len(candles), np.nan)
    starts = window_start_rows(candles, rows, window_bars)
    asked = np.asarray(rows)[starts >= 0]
    asked_starts = starts[starts >= 0]
    stamps = candles[TIMESTAMP_COLUMN]
    model_tags: set[str] = set()
    requests = 0
    batches = range(0, len(asked), batch_windows)
    for offset in tqdm(batches, desc="service windows", unit="batch", disable=not progress):
        chunk = slice(offset, offset + batch_windows)
        windows = [
            candles.iloc[first : last + 1]
            for first, last in zip(asked_starts[chunk], asked[chunk], strict=True)
        ]
        answers = client.predict_batch(windows)
        requests += 1
        for row, answer in zip(asked[chunk], answers, strict=True):
            if pd.Timestamp(answer["timestamp"]) != stamps.iloc[row]:
                raise RuntimeError(
                    f"service answered for {answer['timestamp']}, asked for {stamps.iloc[row]}"
                )
            probability[row] = float(answer["probability_up"])
            model_tags.add(str(answer["model_tag"]))
    if len(model_tags) > 1:
        raise RuntimeError(f"the service changed model during the backtest: {sorted(model_tags)}")
    tag = model_tags.pop() if model_tags else str(client.model_info()["model_tag"])
    return ServiceSignals(probability, tag, requests, time.perf_counter() - started)


def parity(
    candles: pd.DataFrame,
    served: np.ndarray,
    offline: np.ndarray,
    *,
    rows: np.ndarray,
    window_bars: int,
    predict_proba,
    policy: DecisionPolicy,
    sample: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """How the served signals (the ``policy``'s positions from the served P(up)) compare with
    the offline ones on the signal ``rows``.

    Two references: the offline backtest's probabilities (features over the whole history) and,
    on every bar where the signals differ plus ``sample`` random bars, the offline model on the
    very same windows the service got (``features.compute_window_features``). The second must
    agree to float rounding; the first may differ by the warm-up tolerance of the features
    (at most 1e-4 of a feature's standard deviation), which can flip a signal that sits right
    at the threshold.
    """
    rows = np.asarray(rows)
    levels = [policy.entry, policy.exit, policy.short_entry, policy.short_exit]
    thresholds = sorted({float(v) for v in levels if v is not None})
    served_rows, offline_rows = served[rows], offline[rows]
    both = ~np.isnan(served_rows) & ~np.isnan(offline_rows)
    served_target = policy.positions(served_rows)
    offline_target = policy.positions(offline_rows)
    differ = np.flatnonzero(served_target != offline_target)
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(both)
    picked = rng.choice(candidates, size=min(sample, len(candidates)), replace=False)
    check = np.union1d(differ, picked)
    check = check[~np.isnan(served_rows[check])]
    starts = window_start_rows(candles, rows[check], window_bars)
    values = candles[list(OHLCV_COLUMNS)].to_numpy(dtype="float64")
    windows = np.stack([values[s : s + window_bars] for s in starts]) if len(check) else None
    same_windows = (
        np.asarray(predict_proba(compute_window_features(windows)))
        if windows is not None
        else np.empty(0)
    )
    window_diff = np.abs(same_windows - served_rows[check])
    return {
        "bars": int(len(rows)),
        "bars_with_both_signals": int(both.sum()),
        "signal_disagreements_vs_offline": int(len(differ)),
        "max_abs_probability_diff_vs_offline": float(
            np.max(np.abs(served_rows[both] - offline_rows[both]), initial=0.0)
        ),
        "disagreements_max_distance_to_threshold": float(
            np.max(_distance_to_threshold(offline_rows[differ], thresholds), initial=0.0)
        ),
        "bars_rechecked_on_same_windows": int(len(check)),
        "max_abs_probability_diff_on_same_windows": float(np.max(window_diff, initial=0.0)),
    }


def _distance_to_threshold(probability: np.ndarray, thresholds: list[float]) -> np.ndarray:
    return np.min(np.abs(probability[:, np.newaxis] - np.asarray(thresholds)), axis=1)
