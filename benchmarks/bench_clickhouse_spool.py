"""What the ClickHouse sink costs a request: ``ClickHouseSink.record`` (encode the rows as one
JSON line, one ``write(2)`` to the worker's spool file), per row, for 1-, 8- and 64-window
requests. No ClickHouse runs: the shipping thread is not started, so only the request path is
timed (the spool grows on disk; it is deleted at the end).

Reports the median over 7 samples of wall time and of this thread's CPU time per call, divided by
the rows of the call. The target is <= 0.05 ms (50 us) a row.

    .venv/bin/python -m benchmarks.bench_clickhouse_spool [--dir PATH] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_US_PER_ROW = 50.0


def _median_per_call_us(function, *, seconds: float) -> tuple[float, float]:
    """(wall, thread CPU) microseconds per call: medians of 7 samples."""
    wall, cpu = [], []
    for _ in range(7):
        calls, w0, c0 = 0, time.perf_counter(), time.thread_time()
        while time.perf_counter() - w0 < seconds / 7:
            function()
            calls += 1
        wall.append((time.perf_counter() - w0) / calls * 1e6)
        cpu.append((time.thread_time() - c0) / calls * 1e6)
    return float(np.median(wall)), float(np.median(cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where to put the spool")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per batch size")
    args = parser.parse_args()

    from features import FEATURE_NAMES
    from serving.clickhouse import ClickHouseSink
    from stores.clickhouse import parse_dsn
    from stores.spool import Spool

    work = Path(tempfile.mkdtemp(prefix="bench-spool-", dir=args.dir))
    rng = np.random.default_rng(0)
    load = os.getloadavg()
    print(f"nproc {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"spool in {work}")
    print(f"{'windows':>8} {'wall us/call':>13} {'wall us/row':>12} {'cpu us/row':>11}")
    try:
        sink = ClickHouseSink(
            parse_dsn("clickhouse://127.0.0.1:9/bench"),
            feature_names=FEATURE_NAMES,
            spool_dir=work,
            spool_max_bytes=1 << 40,
        )
        sink.spool = Spool.claim(work, header=b"{}", max_bytes=1 << 40)  # no shipping thread
        for windows in (1, 8, 64):
            features = rng.normal(size=(windows, len(FEATURE_NAMES)))
            answers = [
                {
                    "probability_up": float(p),
                    "signal": "long" if p > 0.5 else "flat",
                    "model_tag": "btcusdt_mlp:benchmark0000001",
                    "timestamp": "2022-03-01T12:00:00Z",
                    "horizon_bars": 1,
                }
                for p in rng.uniform(size=windows)
            ]

            def record(features=features, answers=answers):
                sink.record(features, answers, "5f0c2b8e9d7a4c61b3e2f1a0d9c8b7a6")

            wall, cpu = _median_per_call_us(record, seconds=args.seconds)
            verdict = "ok" if wall / windows <= TARGET_US_PER_ROW else "OVER TARGET"
            print(
                f"{windows:>8} {wall:>13.1f} {wall / windows:>12.2f} {cpu / windows:>11.2f}"
                f"  {verdict} (target {TARGET_US_PER_ROW:.0f} us/row)"
            )
        rows, size = sink.spool.pending_rows, sink.spool.pending_bytes
        print(f"spooled {rows} rows, {size / rows:.0f} bytes a row")
        sink.spool.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
