"""Warm-up: how far the shortest window's features (and P(up)) are from the whole history's.

At every end point of the bundled BTCUSDT candles (every row with ``--warmup`` rows of gap-free
history before it), the features of a window of ``warmup + 1`` candles are compared with those
computed over the whole segment before it (``features._warmup.history_cut``). Prints, per
feature, the largest move in units of the feature's standard deviation, where it happens, its
99th percentile and the share of end points above ``--threshold``; with ``--model``, the same for
P(up) of a stored model. Usage:
``.venv/bin/python -m benchmarks.bench_warmup [--warmup 240] [--model btcusdt_mlp:<version>]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from features import FEATURE_NAMES, WARMUP_BARS, contiguous_segments
from features._warmup import history_cut
from training.data import load_bundled_btcusdt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=WARMUP_BARS, help="history kept (bars)")
    parser.add_argument("--threshold", type=float, default=1e-4, help="std units to count")
    parser.add_argument("--model", default=None, help="stored model tag, for P(up) moves")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    segments = contiguous_segments(load_bundled_btcusdt().frame)
    history = history_cut(segments, warmup_bars=args.warmup)
    moves = history.moves()
    seconds = time.perf_counter() - start
    print(
        f"warm-up {args.warmup} bars: windows of {args.warmup + 1} candles vs the whole history, "
        f"{len(moves)} end points of the bundled BTCUSDT data; {time.strftime('%Y-%m-%d')}, "
        f"nproc={os.cpu_count()}, {platform.processor() or platform.machine()}; "
        f"computed in {seconds:.1f} s"
    )
    print(f"{'feature':<18} {'max (std)':>10}  {'at (UTC)':<17} {'p99':>9} {'> thr':>7}")
    for name in FEATURE_NAMES:
        column = moves[name]
        at = column.idxmax().strftime("%Y-%m-%d %H:%M")
        print(
            f"{name:<18} {column.max():>10.2e}  {at:<17} {column.quantile(0.99):>9.2e} "
            f"{(column > args.threshold).mean():>7.2%}"
        )
    if args.model:
        from artifact import load_model

        model = load_model(args.model).model
        full = model.predict_proba(history.full.to_numpy())
        cut = model.predict_proba(history.cut.to_numpy())
        delta = np.abs(cut - full)
        worst = int(np.argmax(delta))
        print(
            f"P(up) of {args.model}: max |move| {delta.max():.2e} at "
            f"{moves.index[worst].strftime('%Y-%m-%d %H:%M')}, p99 {np.quantile(delta, 0.99):.2e}, "
            f"mean {delta.mean():.2e}; P(up) range {full.min():.3f}..{full.max():.3f}"
        )


if __name__ == "__main__":
    main()
