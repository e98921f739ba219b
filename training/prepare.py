"""Build the training table (features + label) from candles and say what was done.

Usage: ``btcusdt prepare [--data PATH] [--horizon N] [--out PATH.parquet]`` (or
``python -m training.prepare``)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import click
import pandas as pd

from cli import existing_file, run
from features import (
    DEFAULT_LABEL_HORIZON,
    FEATURE_NAMES,
    LABEL_NAME,
    WARMUP_BARS,
    compute_features_segmented,
    make_labels,
)
from training.data import Candles, load_bundled_btcusdt, load_candles


@dataclass
class Dataset:
    """Feature matrix and labels on the same timestamps, plus the candles they came from."""

    table: pd.DataFrame  # FEATURE_NAMES columns + LABEL_NAME, indexed by candle open time
    candles: Candles
    label_horizon: int

    @property
    def features(self) -> pd.DataFrame:
        return self.table[list(FEATURE_NAMES)]

    @property
    def labels(self) -> pd.Series:
        return self.table[LABEL_NAME]


def load_data(path: str | Path | None = None) -> Candles:
    """The bundled BTCUSDT candles by default, else any file :func:`load_candles` accepts."""
    return load_bundled_btcusdt() if path is None else load_candles(path)


def build_dataset(
    candles: Candles, *, label_horizon: int = DEFAULT_LABEL_HORIZON, max_gap_bars: int = 0
) -> Dataset:
    """Features for every warmed-up row and its label; rows without a label are dropped.

    ``max_gap_bars`` bridges scheduled market closures (FX weekends) in the features; labels
    never span a gap either way.
    """
    feats = compute_features_segmented(
        candles.frame, max_gap_bars=max_gap_bars, interval=candles.interval
    )
    labels = make_labels(candles.frame, label_horizon, interval=candles.interval)
    table = feats.join(labels, how="inner")
    table = table[table[LABEL_NAME].notna()]
    return Dataset(table=table, candles=candles, label_horizon=label_horizon)


@click.command("prepare", help=__doc__.splitlines()[0])
@click.option(
    "--data",
    type=existing_file,
    default=None,
    help="CSV/Parquet of OHLCV candles at any regular interval (inferred) "
    "(default: the bundled Binance BTCUSDT 1h data)",
)
@click.option(
    "--horizon",
    type=int,
    default=DEFAULT_LABEL_HORIZON,
    show_default=True,
    help="label horizon in bars",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the table as Parquet here",
)
def prepare_command(data: Path | None, horizon: int, out: Path | None) -> int:
    """``btcusdt prepare`` / ``python -m training.prepare``."""
    started = time.perf_counter()
    candles = load_data(data)
    dataset = build_dataset(candles, label_horizon=horizon)
    elapsed = time.perf_counter() - started
    print(candles.report.summary())
    table = dataset.table
    print(
        f"features: {len(FEATURE_NAMES)} ({', '.join(FEATURE_NAMES)}); warm-up {WARMUP_BARS} bars"
    )
    print(
        f"training table: {len(table)} rows, {table.index[0]} .. {table.index[-1]}, "
        f"up-share {table[LABEL_NAME].mean():.4f}, horizon {horizon} bar(s), "
        f"built in {elapsed:.1f} s"
    )
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(out)
        print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m training.prepare``: the ``btcusdt prepare`` command."""
    return run(prepare_command, argv, prog_name="python -m training.prepare")


if __name__ == "__main__":
    raise SystemExit(main())
