"""A model's age and expiry, from its metadata.

Training records ``trained_at`` and, from the configured lifetime (``TrainConfig.lifetime_hours``,
in the spirit of FreqAI's ``expiration_hours``), ``expires_at``. An expired model keeps serving;
``model_info``, the ``btcusdt_model_expiry_timestamp_seconds`` gauge and its alert say that it
is time to retrain. Models saved before expiry was recorded keep loading: they report
"no expiry recorded".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

TRAINED_AT, EXPIRES_AT, LIFETIME_HOURS = "trained_at", "expires_at", "lifetime_hours"
"""Metadata keys (ISO 8601 UTC times; the lifetime in hours)."""
NO_EXPIRY = "no expiry recorded"


def _moment(metadata: Mapping[str, Any], key: str) -> pd.Timestamp | None:
    value = metadata.get(key)
    if value in (None, ""):
        return None
    moment = pd.Timestamp(str(value))
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def trained_at(metadata: Mapping[str, Any]) -> pd.Timestamp | None:
    return _moment(metadata, TRAINED_AT)


def expires_at(metadata: Mapping[str, Any]) -> pd.Timestamp | None:
    return _moment(metadata, EXPIRES_AT)


def expiry_after(trained: pd.Timestamp, lifetime_hours: float) -> pd.Timestamp | None:
    """When a model trained at ``trained`` expires (None: a lifetime of 0 means never)."""
    if lifetime_hours < 0:
        raise ValueError(f"lifetime_hours must be >= 0, got {lifetime_hours}")
    return None if lifetime_hours == 0 else trained + pd.Timedelta(hours=lifetime_hours)


def _hours(delta: pd.Timedelta) -> float:
    return round(delta / pd.Timedelta(hours=1), 3)


def model_age(metadata: Mapping[str, Any], *, now: pd.Timestamp | None = None) -> dict[str, Any]:
    """``trained_at``, ``age_hours``, ``expires_at``, ``expired`` and a sentence, ``status``.

    Times are ISO 8601 UTC strings; fields that are unknown are None (a model saved before
    expiry was recorded has ``expires_at`` None and ``status`` "no expiry recorded").
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    trained, expires = trained_at(metadata), expires_at(metadata)
    age = None if trained is None else _hours(now - trained)
    if expires is None:
        expired, sentence = None, NO_EXPIRY
    elif now >= expires:
        expired, sentence = True, f"expired {_hours(now - expires):g} h ago: retrain"
    else:
        expired, sentence = False, f"expires in {_hours(expires - now):g} h"
    return {
        "trained_at": None if trained is None else trained.isoformat(),
        "age_hours": age,
        "expires_at": None if expires is None else expires.isoformat(),
        "expired": expired,
        "status": sentence,
    }
