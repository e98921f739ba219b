"""``btcusdt data update --archive``: Binance's archive ZIPs in the published layout (monthly and
daily, with and without a header row, times in milliseconds and in microseconds), generated
here from the recorded candles (tests/fake_binance.py), read from a folder and over HTTP with
their ``.CHECKSUM`` files."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from ingest import provenance_path
from ingest._archive import ArchiveError, parse_archive
from ingest.cli import data
from tests.fake_binance import FakeBinance, month_klines, recorded_klines, write_archive

SINCE = "2021-08-01T00:00:00Z"


@pytest.fixture(scope="module")
def recorded(btc_frame: pd.DataFrame) -> pd.DataFrame:
    stamps = btc_frame["timestamp"]
    chosen = (stamps >= pd.Timestamp(SINCE)) & (stamps < pd.Timestamp("2021-11-01", tz="UTC"))
    return btc_frame[chosen].reset_index(drop=True)


@pytest.fixture(scope="module")
def klines(recorded: pd.DataFrame) -> list[list]:
    return recorded_klines(recorded)


def day_klines(klines: list[list], day: str) -> list[list]:
    start = pd.Timestamp(day, tz="UTC")
    lo = int((start - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1))
    return [k for k in klines if lo <= k[0] < lo + 86_400_000]


@pytest.fixture
def archive(tmp_path, klines):
    """August in ms without a header, September in us with a header (as Binance writes files
    from 2025 on), October's first three days as daily files and the whole of October as a
    monthly file (the days met twice, identical)."""
    root = tmp_path / "archive"
    write_archive(root, "BTCUSDT-1h-2021-08.zip", month_klines(klines, "2021-08"))
    write_archive(
        root, "BTCUSDT-1h-2021-09.zip", month_klines(klines, "2021-09"), unit="us", header=True
    )
    for day in ("2021-10-01", "2021-10-02", "2021-10-03"):
        write_archive(
            root, f"BTCUSDT-1h-{day}.zip", day_klines(klines, day), period="daily", header=True
        )
    write_archive(root, "BTCUSDT-1h-2021-10.zip", month_klines(klines, "2021-10"), checksum=False)
    return root


def run_update(out, location, *extra):
    args = ["update", "--since", SINCE, "--out", str(out), "--archive", str(location), *extra]
    result = CliRunner().invoke(data, [*args, "--no-progress"], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_archive_folder_monthly_and_daily_in_both_units_gives_the_recorded_candles(
    tmp_path, archive, recorded
):
    out = tmp_path / "BTCUSDT-1h.parquet"
    code, stdout, stderr = run_update(out, archive)
    assert code == 0, stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), recorded, check_dtype=False)
    assert "rows added: 2202" in stdout
    assert "met twice with identical values, kept once: 72" in stdout  # 3 daily files
    assert "1 archive file(s) without .CHECKSUM: BTCUSDT-1h-2021-10.zip" in stdout
    assert "gaps in the new candles: 2 (6 missing bars" in stdout
    provenance = json.loads(provenance_path(out).read_text())
    assert provenance["source"] == f"binance-archive {archive}"
    assert provenance["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    again = run_update(out, archive)
    assert again[0] == 0 and "rows added: 0" in again[1] and "(unchanged)" in again[1]


def test_archive_over_http_with_checksums_and_unpublished_files(tmp_path, archive, recorded):
    out = tmp_path / "BTCUSDT-1h.parquet"
    with FakeBinance([[0] * 12], archive_root=archive).running() as fake:
        code, stdout, stderr = run_update(out, fake.url)
        fetched = {r.path.rsplit("/", 1)[-1] for r in fake.requests if r.status == 200}
    assert code == 0, stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), recorded, check_dtype=False)
    assert {"BTCUSDT-1h-2021-08.zip", "BTCUSDT-1h-2021-08.zip.CHECKSUM"} <= fetched
    assert "archive file(s) not published" in stdout  # months after the data ends


def test_a_file_whose_checksum_does_not_match_is_refused(tmp_path, archive):
    out = tmp_path / "BTCUSDT-1h.parquet"
    target = archive / "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2021-09.zip"
    content = bytearray(target.read_bytes())
    content[100] ^= 0xFF  # one byte of the compressed data
    target.write_bytes(bytes(content))
    code, _, stderr = run_update(out, archive)
    assert code == 2
    assert "BTCUSDT-1h-2021-09.zip: sha256" in stderr and "does not match its .CHECKSUM" in stderr
    assert not out.exists()


def test_a_file_mixing_millisecond_and_microsecond_times_is_refused(klines):
    rows = month_klines(klines, "2021-08")
    mixed = [
        *rows[:10],
        *([k[0] * 1000, *k[1:6], (k[6] + 1) * 1000 - 1, *k[7:]] for k in rows[10:]),
    ]
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        text = "\n".join(",".join(str(v) for v in k) for k in mixed) + "\n"
        archive.writestr("BTCUSDT-1h-2021-08.csv", text)
    with pytest.raises(ValueError, match="mixes millisecond and microsecond timestamps") as caught:
        parse_archive("BTCUSDT-1h-2021-08.zip", buffer.getvalue(), symbol="BTCUSDT", interval="1h")
    assert "line 1 is in ms, BTCUSDT-1h-2021-08.zip line 11 in us" in str(caught.value)


def test_a_row_outside_the_files_period_or_breaking_a_rule_is_refused_by_line(tmp_path, klines):
    september = month_klines(klines, "2021-09")
    path = write_archive(tmp_path, "BTCUSDT-1h-2021-08.zip", september[:5], header=True)
    with pytest.raises(ValueError, match=r"line 2: candle 2021-09-01T00:00:00\+00:00 .* outside"):
        parse_archive(path.name, path.read_bytes(), symbol="BTCUSDT", interval="1h")
    broken = [list(k) for k in month_klines(klines, "2021-08")]
    broken[6][4] = "-1"
    path = write_archive(tmp_path / "other", "BTCUSDT-1h-2021-08.zip", broken, checksum=False)
    out = tmp_path / "BTCUSDT-1h.parquet"
    code, _, stderr = run_update(out, path.parent)
    assert code == 2
    assert stderr == "error: BTCUSDT-1h-2021-08.zip line 7: close must be > 0, got -1.0\n"


def test_a_zip_that_is_not_an_archive_is_refused():
    with pytest.raises(ArchiveError, match="not a ZIP file"):
        parse_archive("BTCUSDT-1h-2021-08.zip", b"<html>", symbol="BTCUSDT", interval="1h")
