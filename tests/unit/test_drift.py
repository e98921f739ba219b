"""Drift statistics on real features: shifted data shows drift, unshifted data does not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from features import FEATURE_NAMES, compute_features
from monitoring.drift_stats import drift_table, ks_statistic, psi, reference_profile


@pytest.fixture(scope="module")
def features(btc_slice):
    return compute_features(btc_slice).to_numpy()


def test_same_period_shows_no_drift(features):
    reference = features[:1500]
    # A fresh sample of the same regime (not identical rows) must read as stable.
    rng = np.random.default_rng(0)
    same = reference[rng.choice(len(reference), 1000, replace=False)]
    table = drift_table(reference_profile(reference, FEATURE_NAMES), same, FEATURE_NAMES)
    assert all(row["psi"] < 0.1 for row in table.values()), table
    assert all(row["level"] == "stable" for row in table.values())


def test_shifted_features_show_drift(features):
    reference = features[:1500]
    profile = reference_profile(reference, FEATURE_NAMES)
    shifted = reference.copy()
    j = FEATURE_NAMES.index("rsi_14")
    shifted[:, j] += 2 * reference[:, j].std()
    table = drift_table(profile, shifted, FEATURE_NAMES)
    assert table["rsi_14"]["psi"] > 0.25 and table["rsi_14"]["level"] == "significant"
    assert table["rsi_14"]["ks"] > 0.5
    untouched = [n for n in FEATURE_NAMES if n != "rsi_14"]
    assert max(table[n]["psi"] for n in untouched) < 1e-9


def test_ks_matches_scipy_two_sample_statistic(features):
    reference, recent = features[:1500], features[1500:2500]
    profile = reference_profile(reference, FEATURE_NAMES)
    for name in ("ret_1", "rsi_14", "atr_norm_14", "obv_flow_24"):
        j = FEATURE_NAMES.index(name)
        exact = ks_2samp(reference[:, j], recent[:, j]).statistic
        # The reference is stored as a 200-step quantile grid: agreement to its resolution.
        assert ks_statistic(profile["features"][name], recent[:, j]) == pytest.approx(
            exact, abs=1.0 / 200 + 1e-3
        )


def test_psi_by_hand_on_two_bins():
    reference = {"edges": [0.0], "shares": [0.5, 0.5]}
    values = np.array([-1.0] * 8 + [1.0] * 2)
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert psi(reference, values) == pytest.approx(expected)
