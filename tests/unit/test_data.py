"""The candle loaders: the bundled export's quirks and the validation of user files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.candles import CandleValidationError, find_gaps, validate_candles
from training.data import (
    BUNDLED_BTCUSDT,
    BUNDLED_BTCUSDT_SHA256,
    file_sha256,
    load_bundled_btcusdt,
    load_bundled_eurusd,
    load_candles,
)

HOUR = pd.Timedelta(hours=1)


def test_bundled_file_is_the_documented_upstream_csv():
    assert file_sha256(BUNDLED_BTCUSDT) == BUNDLED_BTCUSDT_SHA256


def test_bundled_loader_skips_banner_and_sorts_oldest_first(btc):
    frame = btc.frame
    assert list(frame.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert frame["timestamp"].is_monotonic_increasing
    assert frame["timestamp"].dt.tz is not None
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2017-08-17 05:00", tz="UTC")
    assert frame["timestamp"].iloc[-1] == pd.Timestamp("2022-06-14 23:00", tz="UTC")


def test_bundled_loader_reads_seconds_and_milliseconds_epochs(btc):
    ts = btc.frame.set_index("timestamp")
    # 2020-08-01 22:00 is a seconds-epoch row, 2020-08-02 01:00 a milliseconds-epoch row.
    assert ts.loc[pd.Timestamp("2020-08-01 22:00", tz="UTC"), "close"] == pytest.approx(11783.30)
    assert ts.loc[pd.Timestamp("2020-08-02 01:00", tz="UTC"), "close"] == pytest.approx(11942.55)
    # Neither format left a hole or an overlap at the switch.
    around = btc.frame[
        btc.frame["timestamp"].between(
            pd.Timestamp("2020-08-01 18:00", tz="UTC"), pd.Timestamp("2020-08-02 06:00", tz="UTC")
        )
    ]
    assert (around["timestamp"].diff().dropna() == HOUR).all()


def test_bundled_loader_keeps_one_row_of_the_duplicated_hour_the_precise_one(btc):
    hour = pd.Timestamp("2020-08-01 23:00", tz="UTC")
    rows = btc.frame[btc.frame["timestamp"] == hour]
    assert len(rows) == 1
    assert rows["volume"].iloc[0] == pytest.approx(2194.598589)  # the full-precision row
    assert any("duplicated hour" in why for _, why in btc.report.dropped)


def test_bundled_loader_drops_bogus_first_row_and_unfinished_last_candle(btc):
    dropped = dict(btc.report.dropped)
    assert "2017-08-17T04:00:00+00:00" in dropped
    assert "2022-06-15T00:00:00+00:00" in dropped
    assert btc.frame["high"].iloc[:24].max() < 5000


def test_bundled_loader_reports_gaps_without_filling_them(btc):
    assert len(btc.report.gaps) == 10
    assert btc.report.missing_bars == 22
    assert btc.report.rows_kept == len(btc.frame) == 42285
    step = btc.frame["timestamp"].diff().dropna()
    assert (step > HOUR).sum() == 10


def test_bundled_loader_keeps_and_counts_zero_volume_hours(btc):
    assert (btc.frame["volume"] == 0).sum() == 117
    assert any("117 zero-volume" in note for note in btc.report.notes)


def test_bundled_loader_refuses_a_file_with_another_checksum(tmp_path):
    raw = gzip.decompress(BUNDLED_BTCUSDT.read_bytes()).replace(b"22136.42", b"22136.43", 1)
    path = tmp_path / BUNDLED_BTCUSDT.name
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(CandleValidationError, match="sha256"):
        load_bundled_btcusdt(path)


def test_held_out_eurusd_market_loads_with_weekend_gaps_reported():
    eur = load_bundled_eurusd()
    assert len(eur.frame) == 6225
    assert eur.frame["close"].between(0.9, 1.5).all()
    weekend = [g for g in eur.report.gaps if g.missing_bars >= 40]
    assert len(weekend) >= 40


def _write_csv(tmp_path: Path, frame: pd.DataFrame, name: str = "candles.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def user_frame(btc_slice) -> pd.DataFrame:
    frame = btc_slice.iloc[:50].copy()
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    return frame


def test_load_candles_round_trips_csv_and_parquet(tmp_path, btc_slice, user_frame):
    from_csv = load_candles(_write_csv(tmp_path, user_frame))
    pd.testing.assert_frame_equal(from_csv.frame, btc_slice.iloc[:50].reset_index(drop=True))
    parquet = tmp_path / "candles.parquet"
    btc_slice.iloc[:50].to_parquet(parquet)
    from_parquet = load_candles(parquet)
    pd.testing.assert_frame_equal(from_parquet.frame, from_csv.frame)


def test_load_candles_accepts_epoch_milliseconds(tmp_path, btc_slice):
    frame = btc_slice.iloc[:10].copy()
    frame["timestamp"] = frame["timestamp"].map(lambda t: int(t.timestamp() * 1000))
    loaded = load_candles(_write_csv(tmp_path, frame))
    assert (loaded.frame["timestamp"] == btc_slice["timestamp"].iloc[:10].to_numpy()).all()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns="volume"), "missing required column.*volume"),
        (lambda f: f.assign(timestamp=f["timestamp"].str.replace("+00:00", "")), "no UTC offset"),
        (
            lambda f: f.assign(timestamp=f["timestamp"].where(f.index != 5, "yesterday")),
            "not ISO 8601",
        ),
        (
            lambda f: f.assign(close=f["close"].where(f.index != 7, -1.0)),
            "line 9: close must be > 0",
        ),
        (
            lambda f: f.assign(open=f["open"].where(f.index != 3, np.nan)),
            "line 5: open must be a finite number",
        ),
        (
            lambda f: f.assign(volume=f["volume"].where(f.index != 4, -2.0)),
            "line 6: volume must be >= 0",
        ),
        (
            lambda f: f.assign(high=f["high"].where(f.index != 2, f["low"] - 1)),
            "line 4: high .* must be >= low",
        ),
        (
            lambda f: f.assign(
                low=f["low"].where(f.index != 6, f[["open", "close"]].min(axis=1) + 1)
            ),
            r"line 8: low .* must be <= min\(open, close\)",
        ),
        (
            lambda f: f.assign(
                high=f["high"].where(f.index != 9, f[["open", "close"]].max(axis=1) - 1)
            ),
            r"line 11: high .* must be >= max\(open, close\)",
        ),
        (lambda f: pd.concat([f.iloc[:10], f.iloc[9:]]), "line 12: .*duplicate timestamp"),
        (lambda f: f.iloc[[0, 1, 3, 2, 4]], "line 5: .*out of order"),
        (
            lambda f: f.assign(
                timestamp=f["timestamp"].where(
                    f.index != 10, f["timestamp"].str.replace(":00:00+", ":30:00+")
                )
            ),
            "line 12: timestamps must be 0 days 01:00:00 apart",
        ),
    ],
)
def test_load_candles_names_the_row_and_rule_of_bad_data(tmp_path, user_frame, mutate, message):
    path = _write_csv(tmp_path, mutate(user_frame))
    with pytest.raises(CandleValidationError, match=message):
        load_candles(path)


def test_load_candles_reports_gaps_or_refuses_them(tmp_path, user_frame):
    holey = user_frame.drop(index=[20, 21, 22])
    path = _write_csv(tmp_path, holey)
    loaded = load_candles(path)
    assert [(g.missing_bars, g.after.isoformat()) for g in loaded.report.gaps] == [
        (3, user_frame["timestamp"].iloc[19])
    ]
    with pytest.raises(CandleValidationError, match="gap in the candles.*3 missing bar"):
        load_candles(path, allow_gaps=False)


def test_validate_rejects_naive_timestamps(btc_slice):
    naive = btc_slice.iloc[:5].assign(
        timestamp=btc_slice["timestamp"].iloc[:5].dt.tz_localize(None)
    )
    with pytest.raises(CandleValidationError, match="timezone-aware"):
        validate_candles(naive)


def test_find_gaps_counts_missing_bars():
    ts = pd.Series(
        pd.to_datetime(["2021-01-01 00:00", "2021-01-01 01:00", "2021-01-01 05:00"], utc=True)
    )
    (gap,) = find_gaps(ts)
    assert gap.missing_bars == 3
    assert gap.after == ts.iloc[1]


def test_load_candles_infers_and_reports_a_minute_interval(tmp_path, btc_slice):
    """Real candles re-stamped one minute apart: the loader takes the grid from the data."""
    frame = btc_slice.iloc[:300].copy()
    start = frame["timestamp"].iloc[0]
    frame["timestamp"] = [(start + pd.Timedelta(minutes=i)).isoformat() for i in range(300)]
    frame = frame.drop(index=[100, 101])  # a two-minute hole
    loaded = load_candles(_write_csv(tmp_path, frame))
    assert loaded.interval == pd.Timedelta(minutes=1)
    assert loaded.interval_text == "1m"
    assert [g.missing_bars for g in loaded.report.gaps] == [2]
    assert "bar interval inferred from the data: 1m" in loaded.report.summary()
    with pytest.raises(CandleValidationError, match="must be 0 days 00:05:00 apart"):
        load_candles(_write_csv(tmp_path, frame), interval="5min")


def test_one_stray_timestamp_does_not_redefine_the_interval(tmp_path, user_frame):
    stray = user_frame.copy()
    stray.loc[10, "timestamp"] = stray.loc[10, "timestamp"].replace(":00:00+", ":30:00+")
    with pytest.raises(CandleValidationError, match="must be 0 days 01:00:00 apart"):
        load_candles(_write_csv(tmp_path, stray))
