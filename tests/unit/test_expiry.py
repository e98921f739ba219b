"""Model expiry: ``expires_at`` recorded at training from ``TrainConfig.lifetime_hours``, read
back as age and expiry; models saved before expiry existed keep loading."""

from __future__ import annotations

import pandas as pd
import pytest

from artifact import NO_EXPIRY, load_model, model_age, model_summary, save_model
from training.config import TrainConfig
from training.train import _expiry

TRAINED = "2026-11-30T12:00:00+00:00"


def test_age_and_expiry_before_and_after_the_expiry_time():
    metadata = {"trained_at": TRAINED, "expires_at": "2026-12-07T12:00:00+00:00"}
    fresh = model_age(metadata, now=pd.Timestamp("2026-12-01T12:00:00Z"))
    assert fresh == {
        "trained_at": TRAINED,
        "age_hours": 24.0,
        "expires_at": "2026-12-07T12:00:00+00:00",
        "expired": False,
        "status": "expires in 144 h",
    }
    late = model_age(metadata, now=pd.Timestamp("2026-12-07T15:30:00Z"))
    assert late["expired"] is True and late["status"] == "expired 3.5 h ago: retrain"


def test_a_model_without_expiry_reports_no_expiry_recorded():
    answer = model_age({"trained_at": TRAINED}, now=pd.Timestamp("2026-12-01T00:00:00Z"))
    assert answer["expires_at"] is None and answer["expired"] is None
    assert answer["status"] == NO_EXPIRY and answer["age_hours"] == 12.0
    assert model_age({})["age_hours"] is None


def test_training_records_expires_at_from_the_lifetime_and_zero_means_never():
    record = _expiry(TrainConfig(lifetime_hours=36))
    assert pd.Timestamp(record["expires_at"]) - pd.Timestamp(record["trained_at"]) == (
        pd.Timedelta(hours=36)
    )
    assert "expires_at" not in _expiry(TrainConfig(lifetime_hours=0))
    with pytest.raises(ValueError, match="lifetime_hours must be >= 0"):
        TrainConfig(lifetime_hours=-1)


@pytest.mark.slow
def test_a_model_saved_before_expiry_existed_still_loads(trained_model):
    old = {
        k: v
        for k, v in trained_model.metadata.items()
        if k not in ("expires_at", "lifetime_hours", "files_sha256")
    }
    old["train_config"] = {
        k: v for k, v in old["train_config"].items() if k != "lifetime_hours" and v is not None
    }
    # its own model name: the session store's newest btcusdt_mlp stays the trained model
    tag = save_model(trained_model.model, metadata=old, name="btcusdt_mlp_before_expiry")
    loaded = load_model(tag)
    assert loaded.expires_at is None
    assert loaded.trained_at == pd.Timestamp(trained_model.metadata["trained_at"])
    assert model_summary(loaded)["expiry"]["status"] == NO_EXPIRY
