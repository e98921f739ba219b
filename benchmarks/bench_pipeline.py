"""End to end throughput: training data preparation and a full backtest, in rows per second.

``prepare``: :func:`training.prepare.build_dataset` over the whole bundled BTCUSDT data (features
of every gap-free segment + labels), timed in-process after loading. ``backtest``: the CLI a
user runs, ``python -m backtest.run`` with the stored model over its whole out-of-sample range
(wall time, interpreter start and model load included; rows = bars in its CSV), plus its own
stage timing. ``--walk-forward`` adds one walk-forward backtest (retrains every 90 days). Each
figure is the median of ``--repeats`` runs. Usage::

    BENTOML_HOME=/path/with/a/model .venv/bin/python -m benchmarks.bench_pipeline [--help]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from training.data import load_bundled_btcusdt
from training.prepare import build_dataset

REPO_ROOT = Path(__file__).resolve().parent.parent


def _machine() -> str:
    load = os.getloadavg()
    return f"nproc {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def bench_prepare(repeats: int) -> None:
    started = time.perf_counter()
    candles = load_bundled_btcusdt()
    load_s = time.perf_counter() - started
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        dataset = build_dataset(candles)
        seconds.append(time.perf_counter() - started)
    median_s = statistics.median(seconds)
    n_candles, n_rows = len(candles.frame), len(dataset.table)
    print(
        f"prepare: {n_candles} candles -> {n_rows} labelled rows in {median_s:.2f} s "
        f"(median of {repeats}: {', '.join(f'{s:.2f}' for s in seconds)}): "
        f"{n_candles / median_s:,.0f} candles/s, {n_rows / median_s:,.0f} rows/s; "
        f"loading the CSV first took {load_s:.2f} s ({_machine()})"
    )


def _backtest(extra: list[str]) -> tuple[float, int, str]:
    """Wall seconds, bars traded and the CLI's own timing line of one backtest run."""
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as out:
        command = [sys.executable, "-m", "backtest.run", *extra, "--no-plot", "--quiet"]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "--out", out], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
        wall_s = time.perf_counter() - started
        with (Path(out) / "bars.csv").open() as bars:
            n_bars = sum(1 for _ in bars) - 1
    timing = next((line for line in done.stdout.splitlines() if line.startswith("done in")), "")
    return wall_s, n_bars, timing


def bench_backtest(label: str, extra: list[str], repeats: int) -> None:
    runs = [_backtest(extra) for _ in range(repeats)]
    wall_s = statistics.median(run[0] for run in runs)
    n_bars = runs[0][1]
    print(
        f"backtest {label} (python -m backtest.run {' '.join(extra)}): {n_bars} bars in "
        f"{wall_s:.2f} s wall (median of {repeats}): {n_bars / wall_s:,.0f} bars/s end to end; "
        f"the CLI's own timing of the last run: {runs[-1][2] or 'n/a'} ({_machine()})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_pipeline",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="model tag (default: production/newest)")
    parser.add_argument("--walk-forward", action="store_true", help="also one walk-forward run")
    args = parser.parse_args(argv)
    print(time.strftime("%Y-%m-%d %H:%M:%S %Z"), _machine())
    bench_prepare(args.repeats)
    bench_backtest("stored model", ["--model", args.model] if args.model else [], args.repeats)
    if args.walk_forward:
        bench_backtest("walk-forward", ["--walk-forward"], 1)


if __name__ == "__main__":
    main()
