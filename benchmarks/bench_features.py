"""Feature computation: per-window ``ta`` vs the batched fast path, as ratios from one run.

Both engines of :func:`features.compute_window_features` run on the same batches of real
256-bar windows from the bundled BTCUSDT candles, interleaved (ta, fast, ta, fast, ...) so that
load on a shared machine hits both alike; each figure is the median over the repeats. Also
checks, on every batch, that the two engines agree, and times each feature family's fast kernel
with either loop flavour (NumPy / compiled scalar loops). Usage:
``.venv/bin/python -m benchmarks.bench_features [--bars 256] [--batches 1 8 64 256]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from importlib.metadata import version

import numpy as np

from features import OHLCV_COLUMNS, WARMUP_BARS, compute_window_features, contiguous_segments
from features._family import Bars
from features._replay import NUMPY_LOOPS, SCALAR_LOOPS
from features.indicators import FAMILIES
from training.data import load_bundled_btcusdt

GOAL_BATCH = 64
GOAL_SPEEDUP = 20.0
"""Issue 6: the fast path must reach 20x the windows/s of per-window ``ta`` at batch 64."""

MIN_SAMPLE_S = 0.2
"""A timed sample repeats the call until it lasts at least this long (small fast batches)."""


def _sample_s(call: Callable[[], object], n_calls: int) -> float:
    start = time.perf_counter()
    for _ in range(n_calls):
        call()
    return (time.perf_counter() - start) / n_calls


def real_windows(n_windows: int, n_bars: int, *, seed: int = 0) -> np.ndarray:
    """``n_windows`` gap-free windows of real candles, at random places in the bundled data."""
    segments = [s for s in contiguous_segments(load_bundled_btcusdt().frame) if len(s) >= n_bars]
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(n_windows):
        segment = segments[rng.integers(len(segments))][list(OHLCV_COLUMNS)].to_numpy()
        end = rng.integers(n_bars, len(segment) + 1)
        windows.append(segment[end - n_bars : end])
    return np.stack(windows)


def _loop_flavours(pool: np.ndarray, repeats: int, batches: tuple[int, ...] = (1, 64, 1024)) -> None:
    """ms per call of each family's fast kernel with either loop flavour (``features._replay``):
    where each flavour earns its place, recursion by recursion."""
    print("loop flavours, ms per call of each family's fast kernel (numpy / scalar loops):")
    print(f"{'family':<10} " + " ".join(f"{f'batch {b}':>17}" for b in batches))
    for family in FAMILIES:
        cells = []
        for batch in batches:
            _, high, low, close, volume = np.ascontiguousarray(pool[:batch].transpose(2, 1, 0))
            medians = []
            for loops in (NUMPY_LOOPS, SCALAR_LOOPS):
                call = partial(family.fast, Bars(high, low, close, volume, loops))
                n_calls = max(1, int(MIN_SAMPLE_S / _sample_s(call, 2)))
                medians.append(statistics.median(_sample_s(call, n_calls) for _ in range(repeats)))
            cells.append(f"{medians[0] * 1e3:>7.3f} / {medians[1] * 1e3:>7.3f}")
        name = family.reference.__module__.removeprefix("features._")
        print(f"{name:<10} " + " ".join(f"{c:>17}" for c in cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=256, help="candles per window (> warm-up)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--repeats", type=int, default=3, help="timed samples per engine")
    parser.add_argument("--seed", type=int, default=0, help="where the windows are drawn")
    args = parser.parse_args(argv)
    if args.bars <= WARMUP_BARS:
        parser.error(f"--bars must exceed the warm-up ({WARMUP_BARS})")

    pool = real_windows(max(args.batches), args.bars, seed=args.seed)
    print(
        f"feature computation, {args.bars}-bar BTCUSDT windows; {time.strftime('%Y-%m-%d')}, "
        f"nproc={os.cpu_count()}, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}, numpy {version('numpy')}, "
        f"pandas {version('pandas')}, ta {version('ta')}; median of {args.repeats} "
        "interleaved samples"
    )
    header = f"{'batch':>5} {'ta win/s':>10} {'fast win/s':>11} {'speed-up':>9}"
    print(f"{header} {'max |fast - ta|':>16} {'bit-identical':>14}")
    speedups = {}
    for batch in args.batches:
        windows = pool[:batch]
        reference = compute_window_features(windows, engine="ta")
        fast = compute_window_features(windows)
        identical = np.mean(fast == reference)
        run_ta = partial(compute_window_features, windows, engine="ta")
        run_fast = partial(compute_window_features, windows)
        fast_calls = max(1, int(MIN_SAMPLE_S / _sample_s(run_fast, 3)))
        ta_s, fast_s = [], []
        for _ in range(args.repeats):
            ta_s.append(_sample_s(run_ta, 1))
            fast_s.append(_sample_s(run_fast, fast_calls))
        ta_rate = batch / statistics.median(ta_s)
        fast_rate = batch / statistics.median(fast_s)
        speedups[batch] = fast_rate / ta_rate
        print(
            f"{batch:>5} {ta_rate:>10.1f} {fast_rate:>11.1f} {speedups[batch]:>8.1f}x "
            f"{np.abs(fast - reference).max():>16.3g} {identical:>13.1%}"
        )
    _loop_flavours(pool, args.repeats)
    if GOAL_BATCH in speedups:
        verdict = "met" if speedups[GOAL_BATCH] >= GOAL_SPEEDUP else "NOT met"
        print(
            f"goal (fast >= {GOAL_SPEEDUP:g}x ta at batch {GOAL_BATCH}): {verdict}, "
            f"{speedups[GOAL_BATCH]:.1f}x"
        )


if __name__ == "__main__":
    main()
