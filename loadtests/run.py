"""Run a bounded, headless locust load test against the service and summarise it.

Starts ``bentoml serve`` (or ``serve-grpc``) on free loopback ports with a model from the store
(or targets a server given by ``--url`` / ``--grpc-address``, loopback only), runs
``loadtests/locustfile.py`` headless with bounded users, spawn rate, duration and request count,
and writes locust's CSV statistics plus ``summary.json`` (req/s, p50/p95/p99, failures, server
errors, peak server memory, runner batch sizes). Exits 1 if any request failed or got a 5xx
(or none was made). ``python -m loadtests.run --help`` lists the options; ``make loadtest``
runs it.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import click

from cli import existing_file, folder, run
from devtools import REPO_ROOT
from features import WARMUP_BARS
from loadtests.server import (
    BatchSizes,
    Protocol,
    Server,
    batch_sizes,
    default_bentoml_home,
    serve,
)
from loadtests.workload import DEFAULT_WINDOW_BARS, is_server_error

LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"
WORKLOADS = {
    "predict": "PredictUser",
    "indicators": "IndicatorsUser",
    "mixed": "MixedUser",
    "grpc": "GrpcUser",
}
"""``--workload`` choices and the locust user class each runs (``grpc``: the mixed workload)."""
MAX_USERS = 512
MAX_RUN_TIME_S = 3600
MAX_REQUESTS = 1_000_000
CSV_PREFIX = "locust"


@dataclass(frozen=True)
class Summary:
    """The headline of a run (``summary.json``); latencies in ms, as locust rounds them."""

    workload: str
    target: str
    users: int
    requests: int
    failures: int
    server_errors: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    duration_s: float
    per_name: dict[str, dict[str, float]]
    failure_messages: dict[str, int]
    server_peak_rss_mib: dict[str, float] | None = None
    mean_batch_size: dict[str, float] | None = None

    @property
    def passed(self) -> bool:
        return self.requests > 0 and self.failures == 0 and self.server_errors == 0

    def text(self) -> str:
        lines = [
            f"{self.workload} -> {self.target}: {self.users} users, {self.duration_s:.1f} s",
            f"requests {self.requests}, failures {self.failures}, "
            f"server errors (5xx) {self.server_errors}",
            f"{self.requests_per_s:.1f} req/s, p50 {self.p50_ms:g} ms, p95 {self.p95_ms:g} ms, "
            f"p99 {self.p99_ms:g} ms, max {self.max_ms:g} ms",
        ]
        for name, row in self.per_name.items():
            lines.append(
                f"  {name:<24} {row['requests']:>7.0f} req {row['requests_per_s']:>8.1f} req/s "
                f"p50 {row['p50_ms']:g} p99 {row['p99_ms']:g} ms, {row['failures']:.0f} failed"
            )
        for message, count in self.failure_messages.items():
            lines.append(f"  FAILED x{count}: {message}")
        if self.server_peak_rss_mib:
            lines.append(f"server peak RSS (MiB): {self.server_peak_rss_mib}")
        if self.mean_batch_size:
            lines.append(f"mean runner batch size: {self.mean_batch_size}")
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:  # locust writes "N/A" where nothing was measured
        return 0.0


def read_locust_csv(prefix: Path) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """``(rows, failures)``: per request name (and ``Aggregated``) the counts, req/s and
    percentiles of ``<prefix>_stats.csv``; per failure message its count from
    ``<prefix>_failures.csv``."""
    rows: dict[str, dict[str, float]] = {}
    with Path(f"{prefix}_stats.csv").open(newline="") as stats:
        for row in csv.DictReader(stats):
            name = "Aggregated" if row["Name"] == "Aggregated" else f"{row['Type']} {row['Name']}"
            rows[name] = {
                "requests": _number(row["Request Count"]),
                "failures": _number(row["Failure Count"]),
                "requests_per_s": _number(row["Requests/s"]),
                "p50_ms": _number(row["50%"]),
                "p95_ms": _number(row["95%"]),
                "p99_ms": _number(row["99%"]),
                "max_ms": _number(row["Max Response Time"]),
            }
    failures: dict[str, int] = {}
    with Path(f"{prefix}_failures.csv").open(newline="") as errors:
        for row in csv.DictReader(errors):
            message = f"{row['Method']} {row['Name']}: {row['Error']}"
            failures[message] = failures.get(message, 0) + int(_number(row["Occurrences"]))
    return rows, failures


def require_loopback(host: str | None, what: str) -> None:
    """Refuse a target that is not this machine (load tests never leave loopback)."""
    if host == "localhost":
        return
    try:
        if host and ipaddress.ip_address(host.strip("[]")).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"{what}: {host!r} is not a loopback address (127.0.0.1, ::1, localhost)")


PROG = "python -m loadtests.run"


@click.command("loadtest", help=__doc__.splitlines()[0])
@click.option(
    "--workload",
    type=click.Choice(sorted(WORKLOADS)),
    default="mixed",
    show_default=True,
    help="predict / indicators: one API over HTTP; mixed: predict, batches, indicators, "
    "model_info over HTTP; grpc: the mixed workload over gRPC",
)
@click.option(
    "--users",
    type=click.IntRange(1, MAX_USERS),
    default=16,
    show_default=True,
    help="concurrent clients, each sending its next request on the answer",
)
@click.option(
    "--spawn-rate",
    type=click.FloatRange(0, MAX_USERS, min_open=True),
    default=8.0,
    show_default=True,
    help="users started per s",
)
@click.option(
    "--run-time-s",
    type=click.IntRange(1, MAX_RUN_TIME_S),
    default=30,
    show_default=True,
    help="longest run, s",
)
@click.option(
    "--max-requests",
    type=click.IntRange(1, MAX_REQUESTS),
    default=20_000,
    show_default=True,
    help="send at most this many requests; the run ends once they have completed or at the "
    "run time, whichever comes first",
)
@click.option(
    "--window-bars",
    type=click.IntRange(WARMUP_BARS + 1, 2048),
    default=DEFAULT_WINDOW_BARS,
    show_default=True,
    help="candles per window, sampled from the bundled data",
)
@click.option("--out", type=folder, help="default: reports/loadtest/<time>/")
@click.option("--url", help="a running HTTP server, e.g. http://127.0.0.1:3000 (loopback only)")
@click.option("--grpc-address", help="a running gRPC server, e.g. 127.0.0.1:3010 (loopback only)")
@click.option("--model-tag", help="model of the started server (default: production, else newest)")
@click.option(
    "--bentoml-home",
    type=folder,
    help="store holding the model (default: $BENTOML_HOME, else ~/bentoml)",
)
@click.option(
    "--api-workers",
    type=click.IntRange(1, 64),
    default=None,
    help="API server processes of the started server (default: one per CPU)",
)
@click.option(
    "--config",
    type=existing_file,
    default=REPO_ROOT / "configuration.yaml",
    help="BentoML configuration of the started server",
)
def loadtest_command(**options: Any) -> int:
    """``btcusdt loadtest`` / ``python -m loadtests.run``: without --url / --grpc-address it
    starts a server on free loopback ports; the workload picks HTTP or gRPC."""
    args = checked_options(options)
    out = args.out or REPO_ROOT / "reports" / "loadtest" / time.strftime("%Y%m%dT%H%M%S")
    summary, locust_status = run_load_test(args, out)
    print(summary.text())
    print(f"locust CSV statistics and summary.json: {out}")
    if locust_status != 0 and summary.passed:
        click.echo(f"locust exited with status {locust_status}", err=True)
        return 1
    return 0 if summary.passed else 1


def checked_options(options: dict[str, Any]) -> SimpleNamespace:
    """The options, with the rules between them checked.

    Raises:
        click.UsageError: inconsistent options. SystemExit: a target off this machine.
    """
    args = SimpleNamespace(**options)
    if args.spawn_rate > args.users:
        raise click.UsageError("--spawn-rate above --users makes no sense")
    if args.url and args.grpc_address:
        raise click.UsageError("give --url or --grpc-address, not both")
    grpc_workload = args.workload == "grpc"
    if args.url and grpc_workload:
        raise click.UsageError("the grpc workload needs --grpc-address, not --url")
    if args.grpc_address and not grpc_workload:
        raise click.UsageError("--grpc-address is for --workload grpc")
    if args.url:
        require_loopback(urlsplit(args.url).hostname, "--url")
    if args.grpc_address:
        require_loopback(args.grpc_address.rsplit(":", 1)[0], "--grpc-address")
    return args


def parse_args(argv: list[str] | None = None) -> SimpleNamespace:
    """The checked options of ``argv``, without running (a usage error exits with code 2)."""
    try:
        with loadtest_command.make_context(PROG, list(argv or [])) as ctx:
            return checked_options(ctx.params)
    except click.UsageError as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        raise SystemExit(2) from None


@contextmanager
def _target(args: SimpleNamespace, work_dir: Path) -> Iterator[tuple[str, Server | None]]:
    """The address to load, and the server when this run started it."""
    if args.url or args.grpc_address:
        yield args.url or args.grpc_address, None
        return
    protocol: Protocol = "grpc" if args.workload == "grpc" else "http"
    print(f"starting bentoml {protocol} server (model: {args.model_tag or 'store default'})...")
    with serve(
        protocol,
        work_dir=work_dir,
        bentoml_home=args.bentoml_home or default_bentoml_home(),
        model_tag=args.model_tag,
        config=args.config,
        api_workers=args.api_workers,
    ) as server:
        yield server.address, server


def locust_command(args: SimpleNamespace, address: str, csv_prefix: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{args.run_time_s}s",
        "--stop-timeout",
        "10",
        "--max-requests",
        str(args.max_requests),
        "--window-bars",
        str(args.window_bars),
        "--csv",
        str(csv_prefix),
        "--exit-code-on-error",
        "1",
    ]
    if args.workload == "grpc":
        command += ["--grpc-address", address]
    else:
        command += ["--host", address]
    return [*command, WORKLOADS[args.workload]]


def run_load_test(args: SimpleNamespace, out: Path) -> tuple[Summary, int]:
    """Run the load test, writing into ``out``; its summary and locust's exit status."""
    out.mkdir(parents=True, exist_ok=True)
    csv_prefix = out / CSV_PREFIX
    with ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loadtest-")))
        address, server = stack.enter_context(_target(args, work_dir))
        before = batch_sizes(server.metrics()) if server else {}
        if server:
            server.memory.reset()  # peak under load, not at start-up
        print(f"locust: {args.workload} x {args.users} users -> {address}", flush=True)
        started = time.monotonic()
        locust = subprocess.run(
            locust_command(args, address, csv_prefix),
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            timeout=args.run_time_s + 120,
            check=False,
        )
        duration_s = time.monotonic() - started
        extras: dict[str, Any] = {}
        if server:
            server.memory.sample()
            extras["server_peak_rss_mib"] = server.memory.report()
            none = BatchSizes(0, 0, 0)
            moved = {k: v - before.get(k, none) for k, v in batch_sizes(server.metrics()).items()}
            extras["mean_batch_size"] = {k: round(v.mean, 2) for k, v in moved.items() if v.batches}
    rows, failure_messages = read_locust_csv(csv_prefix)
    total = rows.pop("Aggregated")
    server_errors = sum(n for message, n in failure_messages.items() if is_server_error(message))
    summary = Summary(
        workload=args.workload,
        target=address,
        users=args.users,
        requests=int(total["requests"]),
        failures=int(total["failures"]),
        server_errors=server_errors,
        requests_per_s=round(total["requests_per_s"], 2),
        p50_ms=total["p50_ms"],
        p95_ms=total["p95_ms"],
        p99_ms=total["p99_ms"],
        max_ms=total["max_ms"],
        duration_s=round(duration_s, 2),
        per_name=rows,
        failure_messages=failure_messages,
        **extras,
    )
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    (out / "summary.txt").write_text(summary.text() + "\n")
    return summary, locust.returncode


def main(argv: list[str] | None = None) -> int:
    """``python -m loadtests.run``: the ``btcusdt loadtest`` command."""
    return run(loadtest_command, argv, prog_name=PROG)


if __name__ == "__main__":
    sys.exit(main())
