"""Write a 1-minute candle file of N rows for memory measurements (not for model results).

The rows are the bundled real hourly candles, repeated and re-stamped one minute apart: the
memory a pipeline needs depends on the number of rows and columns, not on the prices, so this
measures it honestly; nothing trained on such a file says anything about markets.
Usage: ``.venv/bin/python -m benchmarks.make_minute_file OUT.parquet [--rows 1000000]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from training.data import load_bundled_btcusdt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    hourly = load_bundled_btcusdt().frame
    repeats = -(-args.rows // len(hourly))
    frame = pd.concat([hourly] * repeats, ignore_index=True).iloc[: args.rows]
    start = pd.Timestamp("2020-01-01", tz="UTC")
    frame["timestamp"] = start + pd.to_timedelta(np.arange(len(frame)), unit="min")
    frame.to_parquet(args.out, index=False)
    print(f"wrote {args.out}: {len(frame)} rows, {args.out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
