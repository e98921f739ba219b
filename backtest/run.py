"""Backtest a direction model's signals with fees and slippage, out of sample only.

Usage: ``btcusdt backtest [--model TAG | --walk-forward] [options]`` (or
``python -m backtest.run``; ``--help`` lists the options).

Two modes: (1) a stored model (default: the ``production`` version, else the newest) traded
only on candles after its training period; (2) ``--walk-forward``: retrain before every test
window on data strictly before it and trade only that window. Writes ``bars.csv`` (per bar),
``report.json`` (all statistics) and ``backtest.png``, then prints a short table.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from backtest._backtest import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS, BacktestResult
from backtest._engine import EXECUTION
from backtest._service import PredictClient
from backtest._signals import OutOfSampleError
from backtest._walkforward import DEFAULT_MIN_TRAIN_ROWS, DEFAULT_TEST_BARS
from cli import config_from, dataclass_options, existing_file, folder, run
from features import WARMUP_BARS, CandleValidationError
from training.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "reports" / "backtest"


WALK_FORWARD_TRAINING = (
    "label_horizon",
    "hidden_sizes",
    "max_epochs",
    "patience",
    "seed",
    "threads",
)
"""The :class:`training.train.TrainConfig` fields a walk-forward backtest sets (options derived
from the dataclass); shorter fits than ``btcusdt train`` by default: one per test window."""
WALK_FORWARD_DEFAULTS = {"max_epochs": 20, "patience": 3}


@click.command("backtest", help=__doc__.split("\n\n")[0], epilog=f"Execution: {EXECUTION}")
@click.option(
    "--model",
    default=None,
    metavar="TAG",
    help="stored model name:version (default: the production version, else the newest)",
)
@click.option(
    "--walk-forward",
    is_flag=True,
    help="retrain before each test window instead of using a stored model",
)
@click.option(
    "--data",
    type=existing_file,
    default=None,
    help="CSV/Parquet of hourly candles (timestamp, open, high, low, close, volume); "
    "default: the bundled Binance BTCUSDT 1h data",
)
@click.option(
    "--start",
    default=None,
    help="open time of the first traded bar, ISO 8601 with offset (stored model: default "
    "and earliest = the first bar after its training period)",
)
@click.option(
    "--end", default=None, help="open time of the last traded bar (default: the last candle)"
)
@click.option(
    "--fee-bps",
    type=float,
    default=DEFAULT_FEE_BPS,
    show_default=True,
    help="fee per position change, bps",
)
@click.option(
    "--slippage-bps",
    type=float,
    default=DEFAULT_SLIPPAGE_BPS,
    show_default=True,
    help="slippage per position change, bps",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="trade the plain rule, long when P(up) >= threshold, instead of the model's stored "
    "decision policy (default: the stored policy; its plain threshold is always reported beside "
    "it; 0.5 in walk-forward)",
)
@click.option("--allow-short", is_flag=True, help="go short when P(up) < short threshold")
@click.option(
    "--short-threshold",
    type=float,
    default=None,
    help="with --allow-short: short when P(up) < this (default: 1 - threshold)",
)
@click.option(
    "--service-url",
    default=None,
    metavar="URL",
    help="through a running HTTP service, e.g. http://127.0.0.1:3000 (stored-model mode; "
    "proves the served model trades like the offline one)",
)
@click.option(
    "--grpc", default=None, metavar="HOST:PORT", help="through a running gRPC service instead"
)
@click.option(
    "--window-bars",
    type=int,
    default=WARMUP_BARS + 1,
    show_default=True,
    help="candles per window sent to the service (warm-up + 1)",
)
@click.option(
    "--test-bars",
    type=int,
    default=DEFAULT_TEST_BARS,
    show_default=True,
    help="walk-forward: traded bars per retrain (90 days)",
)
@click.option(
    "--min-train-rows",
    type=int,
    default=DEFAULT_MIN_TRAIN_ROWS,
    show_default=True,
    help="walk-forward: labelled rows the first window is fit on, sets the first traded bar "
    "(1 year)",
)
@click.option(
    "--max-train-rows",
    type=int,
    default=None,
    help="walk-forward: sliding training window of this many rows (default: expanding)",
)
@click.option(
    "--plain-threshold",
    is_flag=True,
    help="walk-forward: trade the plain threshold throughout instead of re-searching the "
    "decision policy before each window on the earlier windows' signals",
)
@dataclass_options(TrainConfig, only=WALK_FORWARD_TRAINING, defaults=WALK_FORWARD_DEFAULTS)
@click.option(
    "--out",
    type=folder,
    help="output directory (default: reports/backtest/<model version | walk-forward>/)",
)
@click.option("--no-plot", is_flag=True, help="skip the PNG")
@click.option("--quiet", is_flag=True, help="no progress bar")
def backtest_command(**options: Any) -> int:
    """``btcusdt backtest`` / ``python -m backtest.run``."""
    args = SimpleNamespace(**options)
    if args.model and args.walk_forward:
        raise click.UsageError("--model and --walk-forward exclude each other")
    if args.service_url and args.grpc:
        raise click.UsageError("give --service-url or --grpc, not both")
    if args.walk_forward and (args.service_url or args.grpc):
        raise click.UsageError(
            "--service-url/--grpc apply to the stored-model mode, not --walk-forward"
        )
    from artifact import ModelContractError

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
        click.echo(f"error: {exc}", err=True)
        return 2
    paths = result.save(out_dir, plot=not args.no_plot)
    elapsed = time.perf_counter() - started
    print(result.table())
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in result.details["timings_seconds"].items())
    print(f"done in {elapsed:.1f} s ({timings})")
    if "service_parity" in result.details:
        print("service parity:", json.dumps(result.details["service_parity"]))
    print(json.dumps({name: str(path) for name, path in paths.items()}))
    return 0


@contextmanager
def _service_client(args: SimpleNamespace) -> Iterator[PredictClient | None]:
    if args.service_url is None and args.grpc is None:
        yield None
        return
    from client import GrpcClient, HttpClient

    client = HttpClient(args.service_url) if args.service_url else GrpcClient(args.grpc)
    with client:
        yield client


def _run(args: SimpleNamespace) -> tuple[BacktestResult, Path]:
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
        config = config_from(
            TrainConfig,
            {name: getattr(args, name) for name in WALK_FORWARD_TRAINING},
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
            search_policy=not args.plain_threshold,
            progress=not args.quiet,
            **costs,
        )
        default_dir = DEFAULT_OUT_DIR / "walk-forward"
    else:
        with _service_client(args) as service:
            result = backtest_stored_model(
                candles,
                model_tag=args.model,
                start=args.start,
                end=args.end,
                threshold=args.threshold,
                service=service,
                window_bars=args.window_bars,
                progress=not args.quiet,
                **costs,
            )
        default_dir = DEFAULT_OUT_DIR / str(result.model_tag).replace(":", "-")
    return result, args.out if args.out is not None else default_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m backtest.run``: the ``btcusdt backtest`` command."""
    return run(backtest_command, argv, prog_name="python -m backtest.run")


if __name__ == "__main__":
    sys.exit(main())
