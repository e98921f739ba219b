"""``btcusdt data update`` over the whole bundled history, against the fake Binance on loopback.

    python -m benchmarks.bench_ingest

Serves the 42,285 bundled candles (tests/fake_binance.py: recorded values in Binance's kline
format), fetches them into a fresh dataset (45 pages of 1000), then runs the update again with
nothing new; prints both times, the file size and whether the stored candles equal the bundled
ones exactly. Loopback, so it measures this code (parse, rules, write), not the network.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd

from ingest import UpdateRequest, update_dataset
from tests.fake_binance import FakeBinance, recorded_klines
from training.data import load_bundled_btcusdt


def main() -> None:
    frame = load_bundled_btcusdt().frame
    klines = recorded_klines(frame)
    with tempfile.TemporaryDirectory() as scratch, FakeBinance(klines).running() as fake:
        out = Path(scratch) / "BTCUSDT-1h.parquet"
        request = UpdateRequest(out=out, base_url=fake.url)
        started = time.perf_counter()
        first = update_dataset(request)
        full_s = time.perf_counter() - started
        started = time.perf_counter()
        update_dataset(request)
        rerun_s = time.perf_counter() - started
        exact = pd.read_parquet(out).equals(frame)
        size = out.stat().st_size
    pages = len(fake.klines_requests())
    print(f"full history: {first.rows_added} candles, {pages} requests, {full_s:.2f} s")
    print(f"re-run with nothing new: {rerun_s:.2f} s (files unchanged)")
    print(f"dataset: {size / 2**20:.2f} MiB Parquet; equals the bundled candles exactly: {exact}")


if __name__ == "__main__":
    main()
