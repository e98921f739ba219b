"""Shaping runner outputs into the contract's answers (and counting what was answered)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from artifact import LoadedModel
from features import FEATURE_NAMES, WARMUP_BARS
from policy import POSITION_NAMES, PolicyError
from serving.errors import reject
from serving.metrics import service_metrics
from serving.schemas import PredictBatch, PredictWindow
from serving.windows import CandleWindow, format_epoch_us


def raise_if_not_finite(features: np.ndarray, windows: list[CandleWindow]) -> None:
    """A 400 naming the window and the first feature that is NaN/inf: a value out of float64's
    range (flat or zero-volume candles have defined features, see ``features.indicators``)."""
    bad = np.argwhere(~np.isfinite(features))
    if len(bad):
        row, column = bad[0]
        raise reject(
            "non_finite_features",
            f"{windows[row].field}: feature {FEATURE_NAMES[column]} is not finite for these "
            "candles (a value overflows float64, e.g. prices or volumes near 1e308)",
        )


@dataclass(frozen=True)
class Holding:
    """The position a request says the client holds (checked against the model's policy)."""

    position: int
    bars_held: int | None


def holdings(loaded: LoadedModel, request: PredictWindow | PredictBatch) -> list[Holding]:
    """Each window's ``position``/``bars_held``, or a 400 naming the field if the model's
    decision policy does not allow that position (``short`` for a long/flat policy)."""
    if isinstance(request, PredictBatch):
        named = [(f"windows[{i}].position", w) for i, w in enumerate(request.windows)]
    else:
        named = [("position", request)]
    out = []
    for field, window in named:
        try:
            position = loaded.policy.position_value(window.position)
        except PolicyError as exc:
            raise reject("invalid_position", f"{field}: {exc}") from None
        out.append(Holding(position, window.bars_held))
    return out


def predictions(
    loaded: LoadedModel,
    windows: list[CandleWindow],
    probabilities: np.ndarray,
    held: list[Holding],
) -> list[dict[str, Any]]:
    """One ``Prediction`` per window, its ``signal`` the target position of the model's
    decision policy (:mod:`policy`) from the held position; counted in the metrics."""
    policy = loaded.policy
    signals = [
        POSITION_NAMES[policy.next_position(float(p), h.position, h.bars_held)]
        for p, h in zip(probabilities, held, strict=True)
    ]
    metrics = service_metrics()
    answers = []
    for window, probability, signal in zip(windows, probabilities, signals, strict=True):
        metrics.predictions.labels(signal=str(signal), model_tag=loaded.tag).inc()
        metrics.probability_up.labels(model_tag=loaded.tag).observe(float(probability))
        answers.append(
            {
                "probability_up": float(probability),
                "signal": str(signal),
                "model_tag": loaded.tag,
                "timestamp": format_epoch_us(window.last_timestamp_us),
                "horizon_bars": loaded.label_horizon,
            }
        )
    return answers


def computed_rows(rows: np.ndarray | str, window: CandleWindow) -> np.ndarray:
    """The ``all_rows`` runner output, or a 400 with its message if a value was not finite."""
    if isinstance(rows, str):
        raise reject("non_finite_features", f"{window.field}: {rows}")
    return rows


def indicators(
    loaded: LoadedModel,
    window: CandleWindow,
    last_row: np.ndarray,
    rows: np.ndarray | None = None,
) -> dict[str, Any]:
    """``{"timestamp", "values", "model_tag"}`` (+ ``rows`` for every warmed-up candle)."""
    answer: dict[str, Any] = {
        "timestamp": format_epoch_us(window.last_timestamp_us),
        "values": dict(zip(FEATURE_NAMES, map(float, last_row), strict=True)),
        "model_tag": loaded.tag,
    }
    if rows is not None:
        stamps = window.timestamps_us[WARMUP_BARS:]
        answer["rows"] = [
            {
                "timestamp": format_epoch_us(ts),
                "values": dict(zip(FEATURE_NAMES, map(float, row), strict=True)),
            }
            for ts, row in zip(stamps, rows, strict=True)
        ]
    return answer
