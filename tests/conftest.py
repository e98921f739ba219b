"""Shared fixtures: real bundled candles, loaded once per session."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
# Tests never touch the user's model store: one throw-away BENTOML_HOME per test session, set
# before anything imports bentoml. Subprocesses (bentoml serve...) inherit it.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bentoml-home-tests-")

from training.data import Candles, load_bundled_btcusdt  # noqa: E402
from training.train import TrainConfig, TrainResult, train_and_save  # noqa: E402

SMALL_TRAIN_CONFIG = TrainConfig(max_epochs=8, patience=3, n_folds=2, seed=0)
"""A quick but real training run (2 folds, few epochs) for tests that need a stored model."""


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


@pytest.fixture(scope="session")
def window(btc_slice: pd.DataFrame) -> pd.DataFrame:
    """300 real candles (2021-10-01 .. 2021-10-13T11:00Z): one window of a request."""
    return btc_slice.iloc[:300].reset_index(drop=True)


@pytest.fixture(scope="session")
def small_training_candles(btc: Candles) -> Candles:
    """7,000 real candles (2021-06-01 .. 2022-03), enough for 2 folds + a holdout."""
    frame = btc.frame
    start = frame.index[frame["timestamp"] == pd.Timestamp("2021-06-01", tz="UTC")][0]
    return Candles(frame.iloc[start : start + 7000].reset_index(drop=True), btc.report)


@pytest.fixture(scope="session")
def trained_model(
    small_training_candles: Candles, tmp_path_factory: pytest.TempPathFactory
) -> TrainResult:
    """A small model trained with ``train_and_save`` into this session's BENTOML_HOME (~10 s)."""
    return train_and_save(
        SMALL_TRAIN_CONFIG,
        small_training_candles,
        report_dir=tmp_path_factory.mktemp("training-report"),
    )


@pytest.fixture(scope="session")
def trained_model_tag(trained_model: TrainResult) -> str:
    """Tag (``btcusdt_mlp:<version>``, stage candidate) of the session's small trained model."""
    return trained_model.tag


@pytest.fixture(scope="session")
def built_bento(trained_model_tag: str):
    """The bento (``scripts.build_bento``) of the session's small model, in this session's store
    (~15 s). Returns a :class:`scripts.build_bento.BuiltBento`."""
    from scripts.build_bento import build_bento

    return build_bento(trained_model_tag)


OUTAGE_BARS = 30
"""Flat, zero-volume candles at the end of each :func:`outage_windows` window."""


@pytest.fixture(scope="session")
def outage_windows(btc_slice: pd.DataFrame) -> list[pd.DataFrame]:
    """40 real 300-candle windows whose last :data:`OUTAGE_BARS` candles are flat at one price
    with no volume, as an exchange outage leaves them (bundled data: 2018-02-08; live feeds
    forward-fill the same way). One window per price level: the last close before the outage
    (forward-filled) and 39 levels across the window's range, rounded to cents. At about a third
    of them the rounding of ``(h + l + c) / 3`` differs from the price."""
    window = btc_slice.iloc[1000:1300].reset_index(drop=True)
    start = len(window) - OUTAGE_BARS
    spread = np.round(np.linspace(window["low"].min(), window["high"].max(), 39), 2)
    levels = [float(window["close"].iloc[start - 1]), *map(float, spread)]
    windows = []
    for price in levels:
        flat = window.copy()
        flat.loc[start:, ["open", "high", "low", "close"]] = price
        flat.loc[start:, "volume"] = 0.0
        windows.append(flat)
    return windows


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory: pytest.TempPathFactory):
    """A real ClickHouse server on free loopback ports for this session
    (:class:`tests.clickhouse_server.ClickHouseServer`; skipped without one, except in CI)."""
    from tests.clickhouse_server import ClickHouseServer, require_clickhouse

    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse"), require_clickhouse())
    server.start()
    yield server
    server.stop()
