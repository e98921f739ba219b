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

import argparse
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
from typing import Any
from urllib.parse import urlsplit

from features import WARMUP_BARS
from loadtests.server import (
    REPO_ROOT,
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


def _positive(kind: type, upper: float) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if not 0 < value <= upper:
            raise argparse.ArgumentTypeError(f"must be > 0 and <= {upper}, got {text}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="mixed",
        help="predict / indicators: one API over HTTP; mixed: predict, batches, indicators, "
        "model_info over HTTP; grpc: the mixed workload over gRPC",
    )
    parser.add_argument(
        "--users",
        type=_positive(int, MAX_USERS),
        default=16,
        help=f"concurrent clients, each sending its next request on the answer (<= {MAX_USERS})",
    )
    parser.add_argument(
        "--spawn-rate", type=_positive(float, MAX_USERS), default=8.0, help="users started per s"
    )
    parser.add_argument(
        "--run-time-s", type=_positive(int, MAX_RUN_TIME_S), default=30, help="longest run, s"
    )
    parser.add_argument(
        "--max-requests",
        type=_positive(int, MAX_REQUESTS),
        default=20_000,
        help="stop once this many requests have completed (whichever of this and the run time "
        "comes first)",
    )
    parser.add_argument(
        "--window-bars",
        type=int,
        default=DEFAULT_WINDOW_BARS,
        help=f"candles per window ({WARMUP_BARS + 1}..2048), sampled from the bundled data",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: reports/loadtest/<time>/")
    target = parser.add_argument_group(
        "target (default: start a server for the run; the workload picks HTTP or gRPC)"
    )
    given = target.add_mutually_exclusive_group()
    given.add_argument("--url", help="a running HTTP server, e.g. http://127.0.0.1:3000")
    given.add_argument("--grpc-address", help="a running gRPC server, e.g. 127.0.0.1:3010")
    target.add_argument("--model-tag", help="model to serve (default: production, else newest)")
    target.add_argument(
        "--bentoml-home",
        type=Path,
        default=None,
        help="store holding the model (default: $BENTOML_HOME, else ~/bentoml)",
    )
    target.add_argument(
        "--api-workers",
        type=_positive(int, 64),
        default=None,
        help="API server processes of the started server (default: one per CPU)",
    )
    target.add_argument(
        "--config",
        type=Path,
        default=REPO_ROOT / "configuration.yaml",
        help="BentoML configuration of the started server",
    )
    args = parser.parse_args(argv)
    if not WARMUP_BARS < args.window_bars <= 2048:
        parser.error(f"--window-bars must be in {WARMUP_BARS + 1}..2048")
    if args.spawn_rate > args.users:
        parser.error("--spawn-rate above --users makes no sense")
    grpc_workload = args.workload == "grpc"
    if args.url and grpc_workload:
        parser.error("the grpc workload needs --grpc-address, not --url")
    if args.grpc_address and not grpc_workload:
        parser.error("--grpc-address is for --workload grpc")
    if args.url:
        require_loopback(urlsplit(args.url).hostname, "--url")
    if args.grpc_address:
        require_loopback(args.grpc_address.rsplit(":", 1)[0], "--grpc-address")
    return args


@contextmanager
def _target(args: argparse.Namespace, work_dir: Path) -> Iterator[tuple[str, Server | None]]:
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


def locust_command(args: argparse.Namespace, address: str, csv_prefix: Path) -> list[str]:
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


def run(args: argparse.Namespace, out: Path) -> tuple[Summary, int]:
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
    args = parse_args(argv)
    out = args.out or REPO_ROOT / "reports" / "loadtest" / time.strftime("%Y%m%dT%H%M%S")
    summary, locust_status = run(args, out)
    print(summary.text())
    print(f"locust CSV statistics and summary.json: {out}")
    if locust_status != 0 and summary.passed:
        print(f"locust exited with status {locust_status}", file=sys.stderr)
        return 1
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
