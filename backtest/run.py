"""Backtest a direction model's signals with fees and slippage, out of sample only.

Usage: ``python -m backtest.run [--model TAG | --walk-forward] [options]`` (``--help``).

Two modes: (1) a stored model (default: the ``production`` version, else the newest) traded
only on candles after its training period; (2) ``--walk-forward``: retrain before every test
window on data strictly before it and trade only that window. Writes ``bars.csv`` (per bar),
``report.json`` (all statistics) and ``backtest.png``, then prints a short table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from backtest._backtest import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS, BacktestResult
from backtest._engine import EXECUTION
from backtest._signals import OutOfSampleError
from backtest._walkforward import DEFAULT_MIN_TRAIN_ROWS, DEFAULT_TEST_BARS
from features import CandleValidationError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "reports" / "backtest"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backtest.run",
        description=__doc__.split("\n\n")[0],
        epilog=f"Execution: {EXECUTION}",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--model",
        default=None,
        metavar="TAG",
        help="stored model name:version (default: the production version, else the newest)",
    )
    mode.add_argument(
        "--walk-forward",
        action="store_true",
        help="retrain before each test window instead of using a stored model",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="CSV/Parquet of hourly candles (timestamp, open, high, low, close, volume); "
        "default: the bundled Binance BTCUSDT 1h data",
    )
    parser.add_argument(
        "--start",
        default=None,
        help="open time of the first traded bar, ISO 8601 with offset (stored model: default "
        "and earliest = the first bar after its training period)",
    )
    parser.add_argument(
        "--end", default=None, help="open time of the last traded bar (default: the last candle)"
    )
    parser.add_argument(
        "--fee-bps", type=float, default=DEFAULT_FEE_BPS, help="fee per position change, bps"
    )
    parser.add_argument(
        "--slippage-bps",
        type=float,
        default=DEFAULT_SLIPPAGE_BPS,
        help="slippage per position change, bps",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="long when P(up) >= threshold (default: the model's stored threshold, 0.5 in "
        "walk-forward)",
    )
    parser.add_argument(
        "--allow-short", action="store_true", help="go short when P(up) < short threshold"
    )
    parser.add_argument(
        "--short-threshold",
        type=float,
        default=None,
        help="with --allow-short: short when P(up) < this (default: 1 - threshold)",
    )
    walk = parser.add_argument_group("walk-forward")
    walk.add_argument(
        "--test-bars", type=int, default=DEFAULT_TEST_BARS, help="traded bars per retrain"
    )
    walk.add_argument(
        "--min-train-rows",
        type=int,
        default=DEFAULT_MIN_TRAIN_ROWS,
        help="labelled rows the first window is fit on (sets the first traded bar)",
    )
    walk.add_argument(
        "--max-train-rows",
        type=int,
        default=None,
        help="sliding training window of this many rows (default: expanding)",
    )
    walk.add_argument("--label-horizon", type=int, default=1, help="bars ahead the label looks")
    walk.add_argument("--max-epochs", type=int, default=20, help="maximum epochs per retrain")
    walk.add_argument("--patience", type=int, default=3, help="early-stopping patience")
    walk.add_argument(
        "--hidden-sizes", type=int, nargs="+", default=[64, 32], help="MLP hidden layer widths"
    )
    walk.add_argument("--seed", type=int, default=0, help="random seed of every retrain")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: reports/backtest/<model version | walk-forward>/)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _run(args: argparse.Namespace) -> tuple[BacktestResult, Path]:
    from backtest._modes import backtest_stored_model, backtest_walk_forward
    from training.prepare import load_data

    candles = load_data(args.data)
    costs = {
        "fee_bps": args.fee_bps,
        "slippage_bps": args.slippage_bps,
        "allow_short": args.allow_short,
        "short_threshold": args.short_threshold,
    }
    if args.walk_forward:
        from training.train import TrainConfig

        config = TrainConfig(
            label_horizon=args.label_horizon,
            max_epochs=args.max_epochs,
            patience=args.patience,
            hidden_sizes=tuple(args.hidden_sizes),
            seed=args.seed,
            gap_bars=max(TrainConfig().gap_bars, args.label_horizon),
            **({} if args.threshold is None else {"threshold": args.threshold}),
        )
        result = backtest_walk_forward(
            candles,
            config=config,
            test_bars=args.test_bars,
            min_train_rows=args.min_train_rows,
            max_train_rows=args.max_train_rows,
            start=args.start,
            end=args.end,
            progress=not args.quiet,
            **costs,
        )
        default_dir = DEFAULT_OUT_DIR / "walk-forward"
    else:
        result = backtest_stored_model(
            candles,
            model_tag=args.model,
            start=args.start,
            end=args.end,
            threshold=args.threshold,
            **costs,
        )
        default_dir = DEFAULT_OUT_DIR / str(result.model_tag).replace(":", "-")
    return result, args.out if args.out is not None else default_dir


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from training.store import ModelContractError

    started = time.perf_counter()
    try:
        result, out_dir = _run(args)
    except (
        OutOfSampleError,
        ModelContractError,
        CandleValidationError,
        ValueError,
        OSError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = result.save(out_dir, plot=not args.no_plot)
    elapsed = time.perf_counter() - started
    print(result.table())
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in result.details["timings_seconds"].items())
    print(f"done in {elapsed:.1f} s ({timings})")
    print(json.dumps({name: str(path) for name, path in paths.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
