"""``btcusdt data update`` (and ``btcusdt retrain``): click commands mounted in the ``btcusdt``
CLI; ``python -m ingest.cli`` runs them on their own.

    btcusdt data update --symbol BTCUSDT --interval 1h --since 2017-08-17T00:00:00Z \\
        --out data/live/BTCUSDT-1h.parquet [--base-url URL] [--archive DIR_OR_URL]
    btcusdt retrain [the same data options] [training options] [--margin M]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import pandas as pd

from cli import config_from, dataclass_options, run
from ingest._archive import ArchiveError
from ingest._dataset import DatasetBusy
from ingest._http import ExchangeError, ExchangeUnavailable, RetryPolicy
from ingest._klines import INTERVALS
from ingest._rest import DEFAULT_BASE_URL
from ingest._update import DEFAULT_SINCE, UpdateRequest, update_dataset
from training.config import TrainConfig

DEFAULT_OUT = Path("data/live/BTCUSDT-1h.parquet")


class UtcTimestamp(click.ParamType):
    """An ISO 8601 time with an explicit UTC offset (naive times are refused)."""

    name = "ISO8601"

    def convert(self, value: Any, param: Any, ctx: Any) -> pd.Timestamp:
        if isinstance(value, pd.Timestamp):
            return value
        try:
            moment = pd.Timestamp(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{value!r} has no UTC offset (write e.g. 2017-08-17T00:00:00Z)", param, ctx)
        return moment.tz_convert("UTC")


@contextmanager
def refusals() -> Iterator[None]:
    """Bad input -> ``error: ...`` on one line and exit 2; an exchange that stays down or
    another run holding the lock -> exit 1. Nothing was written in either case."""
    try:
        yield
    except (ValueError, ArchiveError, ExchangeError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (ExchangeUnavailable, DatasetBusy) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def update_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``data update`` (``retrain`` takes them too)."""
    options = [
        click.option("--symbol", default="BTCUSDT", show_default=True, help="Binance spot symbol"),
        click.option(
            "--interval",
            type=click.Choice(list(INTERVALS)),
            default="1h",
            show_default=True,
            help="kline interval",
        ),
        click.option(
            "--since",
            type=UtcTimestamp(),
            default=DEFAULT_SINCE.strftime("%Y-%m-%dT%H:%M:%SZ"),
            show_default=True,
            help="first candle of a new dataset (an existing one grows from its last candle)",
        ),
        click.option(
            "--out",
            type=click.Path(dir_okay=False, path_type=Path),
            default=DEFAULT_OUT,
            show_default=True,
            help="the Parquet dataset (provenance beside it: <name>.provenance.json)",
        ),
        click.option(
            "--base-url",
            default=DEFAULT_BASE_URL,
            show_default=True,
            help="REST API root (GET /api/v3/klines and /api/v3/time)",
        ),
        click.option(
            "--archive",
            metavar="DIR_OR_URL",
            default=None,
            help="read Binance archive ZIPs instead: a folder, or an archive root URL "
            "such as https://data.binance.vision",
        ),
        click.option(
            "--max-wait",
            type=click.FloatRange(min=0),
            default=RetryPolicy().max_wait_s,
            show_default=True,
            help="bound on the seconds spent waiting in retries (429/418/5xx/timeouts)",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=RetryPolicy().timeout_s,
            show_default=True,
            help="seconds before one request is given up (and retried)",
        ),
        click.option("--progress/--no-progress", default=True, help="progress bar"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def update_request(**options: Any) -> UpdateRequest:
    return UpdateRequest(
        out=options["out"],
        symbol=options["symbol"],
        interval=options["interval"],
        since=options["since"],
        base_url=options["base_url"],
        archive=options["archive"],
        retry=RetryPolicy(max_wait_s=options["max_wait"], timeout_s=options["timeout"]),
    )


@click.group("data")
def data() -> None:
    """Candle datasets from Binance: fetch, check, store."""


@data.command("update")
@update_options
def update(**options: Any) -> None:
    """Add the closed candles after the dataset's last one (REST, or archive files).

    Every candle passes the candle rules; forming candles are never stored; gaps are reported,
    never filled. A run with nothing new changes nothing.
    """
    with refusals():
        result = update_dataset(update_request(**options), progress=options["progress"])
    click.echo(result.summary())


@click.command("retrain")
@update_options
@dataclass_options(TrainConfig)
# The gate's defaults are training.promote's (not imported here: `data update` stays light).
@click.option(
    "--metric",
    default=None,
    help="holdout metric the promotion gate compares (default: btcusdt promote's)",
)
@click.option(
    "--margin",
    type=float,
    default=None,
    help="required advantage over the best baseline on --metric (default: btcusdt promote's)",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where to write the training report (default: reports/<model version>/)",
)
@click.option("--force", is_flag=True, help="train even if a version already has this data")
def retrain(**options: Any) -> None:
    """Update the data, train, gate, build the bento and promote; print what happened and why.

    A refused gate or nothing new to train on is a normal outcome (exit 0); any failure leaves
    the dataset, the model store and the production version as they were.
    """
    from ingest._retrain import retrain as run_cycle
    from scripts.build_bento import BentoCheckError

    with refusals():
        try:
            config = config_from(TrainConfig, options)
            result = run_cycle(
                update_request(**options),
                config,
                margin=options["margin"],
                metric=options["metric"],
                report_dir=options["report_dir"],
                force=options["force"],
                progress=options["progress"],
                on_step=click.echo,
            )
        except BentoCheckError as exc:
            click.echo(f"error: bento: {exc}", err=True)
            click.echo("the candidate was removed; production unchanged", err=True)
            sys.exit(1)
    if result.production_after != result.production_before:
        click.echo(f"served next: {result.production_after} (ship bento {result.bento})")


def main(argv: list[str] | None = None) -> int:
    """``python -m ingest.cli``: ``btcusdt data`` and ``btcusdt retrain`` on their own."""
    group = click.Group("ingest", commands={"data": data, "retrain": retrain})
    return run(group, argv, prog_name="python -m ingest.cli")


if __name__ == "__main__":
    sys.exit(main())
