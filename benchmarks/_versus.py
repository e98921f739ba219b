"""This checkout against a baseline commit, the same loads in alternating rounds (issue 12).

Both sides run their own code, virtual environment, configuration and model
(:mod:`benchmarks._baseline`): HTTP servers first, then gRPC servers. Each scenario loads the
baseline, then this checkout, then the baseline again..., ``--rounds`` times, so load from
other work on the machine falls on both alike. Goals (ratios of this checkout to the baseline):

- HTTP ``predict``, one 256-candle window, at 32 and 64 connections: req/s >= 3x, p99 <= 0.5x;
- gRPC ``predict`` >= 2.5x; HTTP ``indicators`` >= 3x; ``predict`` with 64 windows a request
  >= 2x in windows/s;
- server CPU (every process of the server) <= 4 ms per single-window ``predict``;
- stretch: ``predict`` >= 0.5x the req/s of the same server's ``/readyz``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._baseline import Side, prepare
from benchmarks._grpc_load import call_bytes, run_grpc_load
from benchmarks._load import HEADER, LoadResult, _row, run_load
from devtools import REPO_ROOT
from loadtests.server import Server, cpu_seconds_by_role, serve
from loadtests.workload import Workload

Load = Callable[[Server, int], LoadResult]


@dataclass(frozen=True)
class Scenario:
    """One load: its name, concurrency, protocol, how it is sent, windows per request, and
    the goal on this checkout's req/s (or windows/s) over the baseline's (None: reported)."""

    name: str
    concurrency: int
    protocol: str
    load: Load
    windows_per_request: int = 1
    goal_rps: float | None = None
    goal_p99: float | None = None


@dataclass
class Runs:
    results: list[LoadResult] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    def pooled_p99(self) -> float:
        latencies = [x for r in self.results for x in r.latencies_ms]
        return float(statistics.quantiles(latencies, n=100)[98]) if latencies else float("nan")


def _measure(server: Server, scenario: Scenario) -> tuple[LoadResult, float]:
    before = cpu_seconds_by_role(server.process.pid)
    result = scenario.load(server, scenario.concurrency)
    after = cpu_seconds_by_role(server.process.pid)
    cpu_s = sum(after.values()) - sum(before.values())
    return result, cpu_s * 1000 / max(result.answered, 1)


def _scenarios(workload: Workload, args: argparse.Namespace) -> list[Scenario]:
    single = [c.body for c in workload.calls["predict"]]
    indicators = [c.body for c in workload.calls["indicators"]]
    batch = [_batch_body(workload)]
    grpc_single = call_bytes("predict", single)

    def http(path: str, bodies: list) -> Load:
        def load(server: Server, concurrency: int) -> LoadResult:
            return run_load(
                server.address,
                path,
                bodies,
                concurrency=concurrency,
                duration_s=args.duration_s,
                warmup_s=args.warmup_s,
            )

        return load

    def grpc(requests: list[bytes]) -> Load:
        def load(server: Server, concurrency: int) -> LoadResult:
            return run_grpc_load(
                server.address,
                requests,
                concurrency=concurrency,
                duration_s=args.duration_s,
                warmup_s=args.warmup_s,
            )

        return load

    return [
        Scenario("http predict", 32, "http", http("/predict", single), 1, 3.0, 0.5),
        Scenario("http predict", 64, "http", http("/predict", single), 1, 3.0, 0.5),
        Scenario("http readyz", 32, "http", http("/readyz", [None])),
        Scenario("http indicators", 32, "http", http("/indicators", indicators), 1, 3.0),
        Scenario("http predict x64", 4, "http", http("/predict", batch), 64, 2.0),
        Scenario("grpc predict", 32, "grpc", grpc(grpc_single), 1, 2.5),
    ]


def _batch_body(workload: Workload) -> bytes:
    """One request of 64 real windows (the ``predict`` windows of the workload)."""
    bodies = [json.loads(c.body) for c in workload.calls["predict"][:64]]
    return json.dumps({"windows": bodies}).encode()


def _serve(side: Side, protocol: str, work_dir: Path, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    return serve(
        protocol,  # type: ignore[arg-type]
        work_dir=work_dir / side.name.replace(" ", "-") / protocol,
        bentoml_home=side.bentoml_home,
        config=side.source_dir / "configuration.yaml",
        api_workers=args.api_workers,
        source_dir=side.source_dir,
        python=side.python,
    )


def bench_versus(args: argparse.Namespace, workload: Workload, work_dir: Path) -> None:
    baseline = prepare(args.baseline_ref)
    current = Side("this checkout", REPO_ROOT, Path(args.python), args.bentoml_home)
    sides = (baseline, current)
    scenarios = _scenarios(workload, args)
    runs: dict[tuple[str, str, int], Runs] = {}
    print(f"\n## this checkout against {baseline.name}, alternating rounds")
    print(HEADER)
    for protocol in ("http", "grpc"):
        with ExitStack() as stack:
            servers = {
                side.name: stack.enter_context(_serve(side, protocol, work_dir, args))
                for side in sides
            }
            warm = next(s for s in scenarios if s.protocol == protocol)
            for server in servers.values():  # the runners' batching optimisers train first
                warm.load(server, 8)
            for scenario in (s for s in scenarios if s.protocol == protocol):
                for _ in range(args.rounds):
                    for side in sides:
                        result, cpu_ms = _measure(servers[side.name], scenario)
                        key = (side.name, scenario.name, scenario.concurrency)
                        entry = runs.setdefault(key, Runs())
                        entry.results.append(result)
                        entry.cpu_ms.append(cpu_ms)
                        label = f"{side.name[:9]} {scenario.name}"[:16]
                        row = _row(label, scenario.concurrency, result, {"all": cpu_ms})
                        print(row, flush=True)
    _summary(runs, scenarios, baseline.name, current.name)


def _summary(runs, scenarios: list[Scenario], base: str, test: str) -> None:  # type: ignore[no-untyped-def]
    print(f"\nsummary: {test} / {base} (median of per-round ratios)")
    for s in scenarios:
        b, t = runs[(base, s.name, s.concurrency)], runs[(test, s.name, s.concurrency)]
        per_round = [
            tr.requests_per_s / br.requests_per_s
            for tr, br in zip(t.results, b.results, strict=True)
            if br.requests_per_s
        ]
        rps = statistics.median(per_round) if per_round else float("nan")
        p99 = t.pooled_p99() / b.pooled_p99()
        unit = "windows/s" if s.windows_per_request > 1 else "req/s"
        t_rate = statistics.median(r.requests_per_s for r in t.results) * s.windows_per_request
        b_rate = statistics.median(r.requests_per_s for r in b.results) * s.windows_per_request
        verdict = []
        if s.goal_rps is not None:
            verdict.append(f"{unit} >= {s.goal_rps}x {'MET' if rps >= s.goal_rps else 'MISSED'}")
        if s.goal_p99 is not None:
            verdict.append(f"p99 <= {s.goal_p99}x {'MET' if p99 <= s.goal_p99 else 'MISSED'}")
        non_200 = sum(r.non_200 for r in t.results + b.results)
        print(
            f"  {s.name} @{s.concurrency}: {unit} {t_rate:.1f} vs {b_rate:.1f} = {rps:.2f}x "
            f"(rounds {', '.join(f'{r:.2f}' for r in per_round)}); p99 "
            f"{t.pooled_p99():.0f} vs {b.pooled_p99():.0f} ms = {p99:.2f}x; server CPU "
            f"{statistics.median(t.cpu_ms):.1f} vs {statistics.median(b.cpu_ms):.1f} ms/request; "
            f"non-200 {non_200}" + (f" -> {'; '.join(verdict)}" if verdict else "")
        )
    for side in (test, base):
        predict = runs[(side, "http predict", 32)]
        readyz = runs[(side, "http readyz", 32)]
        ratio = statistics.median(
            p.requests_per_s / r.requests_per_s
            for p, r in zip(predict.results, readyz.results, strict=True)
        )
        cpu = statistics.median(predict.cpu_ms)
        goals = ""
        if side == test:
            goals = (
                f" -> CPU <= 4 ms {'MET' if cpu <= 4 else 'MISSED'}; "
                f"stretch predict/readyz >= 0.5 {'MET' if ratio >= 0.5 else 'MISSED'}"
            )
        print(f"  {side}: predict/readyz req/s {ratio:.2f}, predict CPU {cpu:.2f} ms{goals}")
