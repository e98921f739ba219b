"""The runners: feature computation and model inference, each with adaptive batching.

- ``direction`` (:class:`DirectionRunnable`): ``predict``'s whole computation in one runner
  call, the features of each window's last candle and the model's P(up) on them. One call
  rather than a features call then a model call: each runner round trip costs the API worker
  ~2-3 ms of CPU and the runner ~1.5 ms, against ~0.01 ms for the model itself
  (docs/BENCHMARKS.md, "Service ceiling").
- ``features`` (:class:`FeatureRunnable`): the ``indicators`` API's features (last candle or
  every warmed-up candle).

Every method is batchable along dimension 0, so BentoML merges concurrent requests into one
call (tuned by ``max_batch_size`` / ``max_latency_ms`` in ``configuration.yaml``). Windows
arrive as a list (they may differ in length); windows of equal length are computed together by
``features.compute_window_features``, the one feature implementation. A feature that cannot be
computed (a value that overflows float64, e.g. volumes near 1e308) comes back as NaN or inf in
its own column, or as a message, for the API to name; it never fails the other requests merged
into the same batch.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import bentoml
import numpy as np
import pandas as pd

from artifact import load_model
from features import (
    FEATURE_NAMES,
    CandleValidationError,
    compile_fast_path,
    compute_features,
    compute_window_features,
)
from serving.guard import runner_guard
from serving.metrics import service_metrics


def _window_features(windows: list[np.ndarray]) -> np.ndarray:
    """Last-row features of each window, non-finite values left in the column of the feature
    that failed; an all-NaN row for a window that cannot be read at all (too short, missing
    values: the request checks exclude both)."""
    out = np.full((len(windows), len(FEATURE_NAMES)), np.nan)
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, window in enumerate(windows):
        by_length[len(window)].append(i)
    for indices in by_length.values():
        try:
            batch = np.stack([windows[i] for i in indices])
            out[indices] = compute_window_features(batch, check_finite=False)
        except CandleValidationError:
            for i in indices:  # find the culprit(s), keep the rest
                try:
                    window = windows[i][np.newaxis]
                    out[i] = compute_window_features(window, check_finite=False)[0]
                except CandleValidationError:
                    pass
    return out


class FeatureRunnable(bentoml.legacy.Runnable):
    """``features/`` behind a runner (pandas/numpy: one thread per worker)."""

    SUPPORTED_RESOURCES = ("cpu",)
    SUPPORTS_CPU_MULTI_THREADING = False

    def __init__(self) -> None:
        compile_fast_path()  # before the runner reports ready, not in the first request

    @bentoml.legacy.Runnable.method(batchable=True, batch_dim=0)
    def last_row(self, windows: list[np.ndarray]) -> np.ndarray:
        """``(n_windows, n_features)``: the features of each window's last candle.

        Args:
            windows: ``(n_bars, 5)`` OHLCV arrays of validated candles, oldest first.
        """
        with service_metrics().feature_seconds.labels(method="last_row").time():
            return _window_features(windows)

    @bentoml.legacy.Runnable.method(batchable=True, batch_dim=0)
    def all_rows(self, frames: list[pd.DataFrame]) -> list[np.ndarray | str]:
        """``features.compute_features`` of each validated candle frame (warmed-up rows), or
        the error message where a value is not finite."""
        results: list[np.ndarray | str] = []
        with service_metrics().feature_seconds.labels(method="all_rows").time():
            for frame in frames:
                try:
                    results.append(compute_features(frame).to_numpy())
                except CandleValidationError as exc:
                    results.append(str(exc))
        return results


class DirectionRunnable(bentoml.legacy.Runnable):
    """The stored model (``artifact.load_model``: contract + checksums verified) with the
    features it is fed. One thread a worker (NumPy features, ONNX Runtime with one intra-op
    thread), so ``runners.direction.resources.cpu`` is the number of worker processes."""

    SUPPORTED_RESOURCES = ("cpu",)
    SUPPORTS_CPU_MULTI_THREADING = False

    def __init__(self, model_tag: str):
        self.loaded = load_model(model_tag)
        compile_fast_path()

    @bentoml.legacy.Runnable.method(batchable=True, batch_dim=0)
    def predict_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """``(n_windows, n_features + 1)``: the features of each window's last candle, then
        P(up) in the last column, NaN where a feature is not finite (that feature's column
        shows which).

        Args:
            windows: ``(n_bars, 5)`` OHLCV arrays of validated candles, oldest first.
        """
        with service_metrics().feature_seconds.labels(method="predict_windows").time():
            features = _window_features(windows)
        out = np.full((len(windows), features.shape[1] + 1), np.nan)
        finite = np.isfinite(features).all(axis=1)
        out[:, :-1] = features
        if finite.any():
            out[finite, -1] = self.loaded.model.predict_proba(features[finite])
        return out


async def run(method: Any, *args: Any) -> Any:
    """``await method.async_run(*args)``; a runner that cannot be reached (still loading the
    model, killed, restarting) is a prompt 503, not a 500 or a hang (:mod:`serving.guard`)."""
    return await runner_guard(method.runner).call(method, *args)
