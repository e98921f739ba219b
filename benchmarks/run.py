"""``btcusdt bench``: the benchmarks recorded in docs/BENCHMARKS.md, one process each.

Each benchmark is a script of its own (``python -m benchmarks.bench_<name> --help`` for its
options); this runs the chosen ones in turn with their defaults, each in a fresh process so
one's imports and caches do not colour the next one's figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from cli import run

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = (
    "features",
    "runtime",
    "service",
    "pipeline",
    "monitoring",
    "clickhouse_spool",
    "ingest",
)
DEFAULT_BENCHMARKS = ("features", "runtime", "service", "pipeline")
"""What ``make bench`` runs (~15 min on 2 CPUs; the service ones need a model in the store)."""


@click.command("bench")
@click.argument("names", nargs=-1, type=click.Choice(BENCHMARKS))
def bench_command(names: tuple[str, ...]) -> int:
    """Run the benchmarks NAMES (default: features runtime service pipeline); each prints its
    figures. The exit code is the first failing benchmark's."""
    for name in names or DEFAULT_BENCHMARKS:
        click.echo(f"== benchmarks.bench_{name}", err=True)
        completed = subprocess.run(
            [sys.executable, "-m", f"benchmarks.bench_{name}"], cwd=REPO_ROOT, check=False
        )
        if completed.returncode != 0:
            click.echo(f"error: benchmarks.bench_{name} exited {completed.returncode}", err=True)
            return completed.returncode
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.run``: the ``btcusdt bench`` command."""
    return run(bench_command, argv, prog_name="python -m benchmarks.run")


if __name__ == "__main__":
    sys.exit(main())
