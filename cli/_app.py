"""The ``btcusdt`` group: the stages in order, each loaded from its module when it is run."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from cli._options import run

STAGES = {
    "data": ("ingest.cli:data", "fetch candles from Binance into the dataset"),
    "prepare": ("training.prepare:prepare_command", "build the training table from candles"),
    "train": ("training.train:train_command", "train, evaluate and save a candidate model"),
    "promote": ("training.promote:promote_command", "promote a version to production (gated)"),
    "models": ("training.promote:models_command", "list model versions, stages and metrics"),
    "backtest": ("backtest.run:backtest_command", "out-of-sample backtest with fees"),
    "drift": ("monitoring.drift_report:drift_command", "data drift of the prediction log"),
    "outcomes": ("monitoring.outcomes:outcomes_command", "logged predictions vs outcomes"),
    "load-candles": (
        "monitoring.clickhouse_source:load_candles_command",
        "load candles into ClickHouse (for outcomes)",
    ),
    "loadtest": ("loadtests.run:loadtest_command", "bounded headless locust load test"),
    "bench": ("benchmarks.run:bench_command", "the benchmarks of docs/BENCHMARKS.md"),
    "build": ("scripts.build_bento:build_command", "build and check the bento"),
    "retrain": ("ingest.cli:retrain", "update data, train, gate, build the bento, promote"),
    "containerize-check": (
        "scripts.containerize_check:containerize_check_command",
        "build the image and prove it serves",
    ),
}
"""Subcommand -> (``module:attribute`` of its click command, one-line help), in lifecycle order.
A command's module is imported only when it runs (or shows its own ``--help``), so the group
imports no stage's code and ``btcusdt --help`` is quick."""


class _StageGroup(click.Group):
    """A group whose stage commands are imported on demand, listed in lifecycle order."""

    def __init__(self, *args: Any, stages: dict[str, tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stages = dict(stages)

    def list_commands(self, ctx: click.Context) -> list[str]:
        mounted = [name for name in super().list_commands(ctx) if name not in self.stages]
        return [*self.stages, *mounted]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.stages:
            return super().get_command(ctx, cmd_name)
        target = self.stages[cmd_name][0]
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short_help) for name, (_, short_help) in self.stages.items()]
        for name in self.list_commands(ctx)[len(self.stages) :]:
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = _StageGroup(
    name="btcusdt",
    stages=STAGES,
    help="Hourly BTCUSDT price-direction model: data, training, serving checks, backtest, "
    "monitoring. `btcusdt COMMAND --help` tells each command's options.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Mounting another command: add ``"name": ("module:attribute", "help")`` to STAGES (imported on
# use, so its module may import ``cli``), or ``app.add_command(command)`` for one built here.


def main() -> None:
    """The ``btcusdt`` console script (``[project.scripts]`` in pyproject.toml)."""
    sys.exit(run(app, sys.argv[1:], prog_name="btcusdt"))
