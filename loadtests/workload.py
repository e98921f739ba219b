"""What the load consists of: API calls built from real bundled candles, and how to check answers.

Every request body is a window of consecutive, gap-free BTCUSDT candles sampled (seeded) from
the bundled data, encoded once up front so the load generator spends its time sending, not
serialising. Each call carries a check of its answer (the answer is for *this* window: the
timestamp of its last candle, one prediction per window, the model's feature names), so a load
test counts a wrong answer as a failure, not only a non-200 status.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from client import candles_payload
from features import FEATURE_NAMES, WARMUP_BARS, contiguous_segments
from training.data import load_bundled_btcusdt

DEFAULT_WINDOW_BARS = 256
BATCH_WINDOWS = 8
"""Windows per batch ``predict`` request in the mixed workload."""

KINDS = ("predict", "predict_batch", "indicators", "indicators_all_rows", "model_info")
"""The kinds of call a workload holds; a user's tasks pick one kind at a time."""


SERVER_SIDE_GRPC_CODES = frozenset(
    {"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DATA_LOSS", "UNIMPLEMENTED", "DEADLINE_EXCEEDED"}
)
"""gRPC codes that mean the server failed: the 5xx of gRPC."""
_FAILURE_STATUS = re.compile(r"\b(?:HTTP (\d{3})|gRPC ([A-Z_]+)):")


def http_failure(status: int, body: str) -> str:
    """The failure message of a non-200 HTTP answer (``HTTP 503: <body>``)."""
    return f"HTTP {status}: {body[:300]}"


def grpc_failure(code_name: str, details: str) -> str:
    """The failure message of a gRPC call that was not OK (``gRPC UNAVAILABLE: <details>``)."""
    return f"gRPC {code_name}: {details[:300]}"


def is_server_error(failure: str) -> bool:
    """Whether a failure (as locust records it) is an HTTP 5xx or a server-side gRPC code."""
    match = _FAILURE_STATUS.search(failure)
    if match is None:
        return False
    http_status, grpc_code = match.groups()
    return http_status.startswith("5") if http_status else grpc_code in SERVER_SIDE_GRPC_CODES


class AnswerError(Exception):
    """An answer with status 200 that does not fit the request (counted as a failure)."""


@dataclass(frozen=True)
class Call:
    """One ready-to-send API call.

    Attributes:
        api: the API name (HTTP path ``/<api>``, gRPC ``api_name``).
        name: the name it is counted under in locust's statistics.
        body: the JSON request body.
        check: raises :class:`AnswerError` if the decoded answer does not fit the request.
    """

    api: str
    name: str
    body: bytes
    check: Callable[[Any], None]


def sample_windows(
    n_windows: int, window_bars: int, *, seed: int = 0, candles: pd.DataFrame | None = None
) -> list[pd.DataFrame]:
    """``n_windows`` windows of ``window_bars`` consecutive candles without gaps, at seeded
    random positions in ``candles`` (default: the bundled BTCUSDT data).

    Raises:
        ValueError: no gap-free stretch of ``window_bars`` candles exists.
    """
    if n_windows < 1 or window_bars < 1:
        raise ValueError(f"need n_windows, window_bars >= 1, got {n_windows}, {window_bars}")
    frame = load_bundled_btcusdt().frame if candles is None else candles
    segments = [s for s in contiguous_segments(frame) if len(s) >= window_bars]
    if not segments:
        raise ValueError(f"no gap-free stretch of {window_bars} candles in the data")
    starts_per_segment = np.array([len(s) - window_bars + 1 for s in segments])
    first_start = np.concatenate([[0], np.cumsum(starts_per_segment)])
    picks = np.random.default_rng(seed).integers(0, first_start[-1], n_windows)
    windows = []
    for pick in picks:
        segment = int(np.searchsorted(first_start, pick, side="right")) - 1
        start = int(pick - first_start[segment])
        windows.append(segments[segment].iloc[start : start + window_bars])
    return windows


def _last_timestamp(window: pd.DataFrame) -> str:
    return window["timestamp"].iloc[-1].strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_prediction(answer: Any, timestamp: str) -> None:
    if not isinstance(answer, dict):
        raise AnswerError(f"expected a JSON object, got {type(answer).__name__}")
    probability = answer.get("probability_up")
    if not isinstance(probability, float | int) or not 0.0 <= probability <= 1.0:
        raise AnswerError(f"probability_up {probability!r} is not in [0, 1]")
    if answer.get("signal") not in ("long", "flat", "short"):
        raise AnswerError(f"unknown signal {answer.get('signal')!r}")
    if answer.get("timestamp") != timestamp:
        raise AnswerError(f"answer for {answer.get('timestamp')!r}, the window ends at {timestamp}")
    if not answer.get("model_tag"):
        raise AnswerError("no model_tag in the answer")


def _check_values(values: Any, where: str) -> None:
    if not isinstance(values, dict) or sorted(values) != sorted(FEATURE_NAMES):
        raise AnswerError(f"{where}: values are not the {len(FEATURE_NAMES)} model features")
    if not all(isinstance(v, float | int) and math.isfinite(v) for v in values.values()):
        raise AnswerError(f"{where}: a feature value is not a finite number")


def predict_call(window: pd.DataFrame) -> Call:
    timestamp = _last_timestamp(window)
    body = json.dumps({"candles": candles_payload(window)}).encode()
    return Call("predict", "predict", body, lambda answer: _check_prediction(answer, timestamp))


def predict_batch_call(windows: list[pd.DataFrame]) -> Call:
    timestamps = [_last_timestamp(w) for w in windows]
    body = json.dumps({"windows": [{"candles": candles_payload(w)} for w in windows]}).encode()

    def check(answer: Any) -> None:
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list) or len(predictions) != len(timestamps):
            raise AnswerError(f"expected {len(timestamps)} predictions")
        for prediction, timestamp in zip(predictions, timestamps, strict=True):
            _check_prediction(prediction, timestamp)

    return Call("predict", f"predict[batch {len(windows)}]", body, check)


def indicators_call(window: pd.DataFrame, *, all_rows: bool = False) -> Call:
    timestamp = _last_timestamp(window)
    n_rows = len(window) - WARMUP_BARS
    body = json.dumps({"candles": candles_payload(window), "all_rows": all_rows}).encode()

    def check(answer: Any) -> None:
        if not isinstance(answer, dict) or answer.get("timestamp") != timestamp:
            raise AnswerError(f"expected the features of {timestamp}")
        _check_values(answer.get("values"), "values")
        rows = answer.get("rows", [])
        if all_rows and (not isinstance(rows, list) or len(rows) != n_rows):
            raise AnswerError(f"all_rows: expected {n_rows} rows")
        for i, row in enumerate(rows):
            _check_values(row.get("values") if isinstance(row, dict) else None, f"rows[{i}]")

    return Call("indicators", "indicators[all_rows]" if all_rows else "indicators", body, check)


def model_info_call() -> Call:
    def check(answer: Any) -> None:
        if not isinstance(answer, dict) or list(answer.get("feature_names", [])) != list(
            FEATURE_NAMES
        ):
            raise AnswerError("model_info: feature_names differ from the feature contract")

    return Call("model_info", "model_info", b"{}", check)


@dataclass(frozen=True)
class Workload:
    """Ready calls of every kind in :data:`KINDS`, built from the same sampled windows."""

    calls: dict[str, list[Call]]
    window_bars: int

    def pick(self, kind: str, rng: np.random.Generator) -> Call:
        """A random call of ``kind``."""
        calls = self.calls[kind]
        return calls[int(rng.integers(len(calls)))]


def build_workload(
    *, window_bars: int = DEFAULT_WINDOW_BARS, n_windows: int = 64, seed: int = 0
) -> Workload:
    """Calls of every kind over ``n_windows`` real windows of ``window_bars`` candles."""
    if window_bars <= WARMUP_BARS:
        raise ValueError(f"window_bars must be > warmup_bars ({WARMUP_BARS}), got {window_bars}")
    windows = sample_windows(n_windows, window_bars, seed=seed)
    batches = [windows[i : i + BATCH_WINDOWS] for i in range(0, len(windows), BATCH_WINDOWS)]
    return Workload(
        calls={
            "predict": [predict_call(w) for w in windows],
            "predict_batch": [predict_batch_call(b) for b in batches],
            "indicators": [indicators_call(w) for w in windows],
            "indicators_all_rows": [indicators_call(w, all_rows=True) for w in windows],
            "model_info": [model_info_call()],
        },
        window_bars=window_bars,
    )
