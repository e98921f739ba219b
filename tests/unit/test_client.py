"""The client package's request building and error reading (no server; see test_service.py
for the clients against real servers)."""

from __future__ import annotations

import pandas as pd
import pytest

from client import ServiceError, candles_payload
from client._common import error_message
from client._grpc import _restore_ints


def test_candle_frame_becomes_contract_candles(btc_slice):
    frame = btc_slice.iloc[:3]
    payload = candles_payload(frame)
    assert payload[0] == {
        "timestamp": frame.timestamp.iloc[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
        **{k: float(frame[k].iloc[0]) for k in ("open", "high", "low", "close", "volume")},
    }
    assert [pd.Timestamp(c["timestamp"]) for c in payload] == list(frame.timestamp)


def test_candle_frame_in_another_zone_is_sent_in_utc(btc_slice):
    frame = btc_slice.iloc[:2].copy()
    frame["timestamp"] = frame["timestamp"].dt.tz_convert("America/New_York")
    assert candles_payload(frame)[0]["timestamp"] == btc_slice.timestamp.iloc[0].strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_naive_or_incomplete_frames_are_refused_before_sending(btc_slice):
    naive = btc_slice.iloc[:2].copy()
    naive["timestamp"] = naive["timestamp"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="timezone-aware"):
        candles_payload(naive)
    with pytest.raises(ValueError, match="volume"):
        candles_payload(btc_slice.iloc[:2].drop(columns="volume"))


def test_error_bodies_are_read_as_the_message():
    assert error_message(b'{"error": "candles: Field required"}') == "candles: Field required"
    assert error_message("not json at all") == "not json at all"
    error = ServiceError(400, "candles: Field required")
    assert (error.status, error.error) == (400, "candles: Field required")


def test_grpc_answers_get_their_integer_fields_back():
    answer = {"horizon_bars": 1.0, "probability_up": 0.5, "rows": [{"warmup_bars": 240.0}]}
    restored = _restore_ints(answer)
    assert restored == {"horizon_bars": 1, "probability_up": 0.5, "rows": [{"warmup_bars": 240}]}
    assert isinstance(restored["horizon_bars"], int)
