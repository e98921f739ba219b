"""Shared fixtures: real bundled candles, loaded once per session."""

from __future__ import annotations

import os
import tempfile

import pandas as pd
import pytest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
# Tests never touch the user's model store: one throw-away BENTOML_HOME per test session, set
# before anything imports bentoml. Subprocesses (bentoml serve...) inherit it.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bentoml-home-tests-")

from training.data import Candles, load_bundled_btcusdt  # noqa: E402


@pytest.fixture(scope="session")
def btc() -> Candles:
    """The bundled Binance BTCUSDT 1h candles, cleaned by the loader."""
    return load_bundled_btcusdt()


@pytest.fixture(scope="session")
def btc_frame(btc: Candles) -> pd.DataFrame:
    return btc.frame


@pytest.fixture(scope="session")
def btc_slice(btc_frame: pd.DataFrame) -> pd.DataFrame:
    """3,000 gap-free real candles (2021-10 .. 2022-02), for fast tests."""
    start = btc_frame.index[btc_frame["timestamp"] == pd.Timestamp("2021-10-01", tz="UTC")][0]
    return btc_frame.iloc[start : start + 3000].reset_index(drop=True)
