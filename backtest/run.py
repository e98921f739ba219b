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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backtest._backtest import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS, BacktestResult
from backtest._engine import EXECUTION
from backtest._service import PredictClient
from backtest._signals import OutOfSampleError
from backtest._walkforward import DEFAULT_MIN_TRAIN_ROWS, DEFAULT_TEST_BARS
from features import WARMUP_BARS, CandleValidationError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "reports" / "backtest"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backtest.run",
        description=__doc__.split("\n\n")[0],
        epilog=f"Execution: {EXECUTION}",
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
        "--fee-bps",
        type=float,
        default=DEFAULT_FEE_BPS,
        help="fee per position change, bps (default: %(default)s)",
    )
    parser.add_argument(
        "--slippage-bps",
        type=float,
        default=DEFAULT_SLIPPAGE_BPS,
        help="slippage per position change, bps (default: %(default)s)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="trade the plain rule, long when P(up) >= threshold, instead of the model's stored "
        "decision policy (default: the stored policy; its plain threshold is always reported "
        "beside it; 0.5 in walk-forward)",
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
    served = parser.add_argument_group(
        "through a running service (stored-model mode; proves the served model trades like the "
        "offline one)"
    )
    transport = served.add_mutually_exclusive_group()
    transport.add_argument(
        "--service-url",
        default=None,
        metavar="URL",
        help="HTTP service, e.g. http://127.0.0.1:3000",
    )
    transport.add_argument(
        "--grpc", default=None, metavar="HOST:PORT", help="gRPC service, e.g. 127.0.0.1:3010"
    )
    served.add_argument(
        "--window-bars",
        type=int,
        default=WARMUP_BARS + 1,
        help="candles per window sent to the service (default: warm-up + 1 = %(default)s)",
    )
    walk = parser.add_argument_group("walk-forward")
    walk.add_argument(
        "--test-bars",
        type=int,
        default=DEFAULT_TEST_BARS,
        help="traded bars per retrain (default: %(default)s = 90 days)",
    )
    walk.add_argument(
        "--min-train-rows",
        type=int,
        default=DEFAULT_MIN_TRAIN_ROWS,
        help="labelled rows the first window is fit on, sets the first traded bar "
        "(default: %(default)s = 1 year)",
    )
    walk.add_argument(
        "--max-train-rows",
        type=int,
        default=None,
        help="sliding training window of this many rows (default: expanding)",
    )
    walk.add_argument(
        "--plain-threshold",
        action="store_true",
        help="trade the plain threshold throughout instead of re-searching the decision policy "
        "before each window on the earlier windows' signals",
    )
    walk.add_argument(
        "--label-horizon",
        type=int,
        default=1,
        help="bars ahead the label looks (default: %(default)s)",
    )
    walk.add_argument(
        "--max-epochs",
        type=int,
        default=20,
        help="maximum epochs per retrain (default: %(default)s)",
    )
    walk.add_argument(
        "--patience", type=int, default=3, help="early-stopping patience (default: %(default)s)"
    )
    walk.add_argument(
        "--hidden-sizes",
        type=int,
        nargs="+",
        default=[64, 32],
        help="MLP hidden layer widths (default: %(default)s)",
    )
    walk.add_argument(
        "--seed", type=int, default=0, help="random seed of every retrain (default: %(default)s)"
    )
    walk.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads while retraining (default: %(default)s; the small MLP fits faster "
        "on one thread than on two busy cores)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: reports/backtest/<model version | walk-forward>/)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@contextmanager
def _service_client(args: argparse.Namespace) -> Iterator[PredictClient | None]:
    if args.service_url is None and args.grpc is None:
        yield None
        return
    from client import GrpcClient, HttpClient

    client = HttpClient(args.service_url) if args.service_url else GrpcClient(args.grpc)
    with client:
        yield client


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
            threads=args.threads,
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
    parser = _parser()
    args = parser.parse_args(argv)
    if args.walk_forward and (args.service_url or args.grpc):
        parser.error("--service-url/--grpc apply to the stored-model mode, not --walk-forward")
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
        print(f"error: {exc}", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
