"""Service benchmarks, as ratios measured in one run (issue 6, items 1, 2 and memory).

``ceiling``: one ``bentoml serve`` process (``BTC_SERVE_BENCHMARK_API=true``) answers
``predict_noop`` (predict's JSON parsing and candle validation, no features, no model) and
``predict`` (one 256-candle window) at each concurrency, in alternating rounds; goal: predict
>= 0.6x the no-op's req/s with p99 <= 2x the no-op's. ``batching``: two servers, runner
adaptive batching as shipped vs disabled, the same ``predict`` load in alternating rounds;
goal: >= 1.5x req/s at 64 clients, with batch sizes > 1 read from BentoML's
``bentoml_runner_adaptive_batch_size`` histogram. Both report the servers' peak RSS (every
process of the tree) under load. Bodies are real windows of the bundled candles. Usage::

    BENTOML_HOME=/path/with/a/model .venv/bin/python -m benchmarks.bench_service [--help]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from benchmarks._load import LoadResult, run_load
from loadtests.server import (
    CONFIGURATION,
    BatchSizes,
    Server,
    batch_sizes,
    cpu_seconds_by_role,
    default_bentoml_home,
    serve,
)
from loadtests.workload import build_workload

CEILING_GOAL_RPS_RATIO = 0.6
CEILING_GOAL_P99_RATIO = 2.0
BATCHING_GOAL_RPS_RATIO = 1.5
BATCHING_OFF = {
    "runners": {
        "features": {"batching": {"enabled": False}},
        "direction": {"batching": {"enabled": False}},
    }
}


def _machine() -> str:
    load = os.getloadavg()
    return f"nproc {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def _row(label: str, concurrency: int, result: LoadResult, cpu_ms: dict[str, float]) -> str:
    per_role = " ".join(f"{role} {ms:.1f}" for role, ms in sorted(cpu_ms.items()) if ms >= 0.05)
    return (
        f"{label:<16}{concurrency:>5}{result.requests_per_s:>10.1f}"
        f"{result.percentile_ms(50):>10.1f}{result.percentile_ms(95):>10.1f}"
        f"{result.percentile_ms(99):>10.1f}{result.non_200:>8}"
        f"{100 * result.client_cpu_s / result.duration_s:>10.0f}%  {per_role}"
    )


HEADER = (
    f"{'api':<16}{'conc':>5}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
    f"{'non200':>8}{'client cpu':>11}  server CPU ms per request, by process"
)


def _measure(
    server: Server, path: str, bodies: list[bytes], concurrency: int, args: argparse.Namespace
) -> tuple[LoadResult, dict[str, float]]:
    """One load run, and the server's CPU milliseconds per answered request, per process role
    (warm-up included on both sides of the division: it is the same load)."""
    before = cpu_seconds_by_role(server.process.pid)
    result = run_load(
        server.address,
        path,
        bodies,
        concurrency=concurrency,
        duration_s=args.duration_s,
        warmup_s=args.warmup_s,
    )
    after = cpu_seconds_by_role(server.process.pid)
    answered = max(result.completed * (args.duration_s + args.warmup_s) / args.duration_s, 1)
    cpu_ms = {role: (after[role] - before.get(role, 0.0)) * 1000 / answered for role in after}
    return result, cpu_ms


def _pooled(results: list[LoadResult]) -> LoadResult:
    pooled = LoadResult()
    for result in results:
        pooled.completed += result.completed
        pooled.statuses.update(result.statuses)
        pooled.latencies_ms += result.latencies_ms
        pooled.duration_s += result.duration_s
        pooled.client_cpu_s += result.client_cpu_s
    return pooled


def _moved_batches(server: Server, before: dict[str, BatchSizes]) -> dict[str, BatchSizes]:
    none = BatchSizes(0, 0, 0)
    return {k: v - before.get(k, none) for k, v in batch_sizes(server.metrics()).items()}


def _batch_text(moved: dict[str, BatchSizes]) -> str:
    if not any(v.batches for v in moved.values()):
        return "no adaptive batches recorded"
    return ", ".join(
        f"{k}: mean {v.mean:.2f} over {v.batches:.0f} calls, "
        f"{100 * (1 - v.batches_of_one / v.batches):.0f}% of calls > 1"
        for k, v in sorted(moved.items())
        if v.batches
    )


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def bench_ceiling(args: argparse.Namespace, bodies: list[bytes], work_dir: Path) -> None:
    print(f"\n## ceiling: predict_noop vs predict, same server ({_machine()})")
    with serve(
        "http",
        work_dir=work_dir / "ceiling",
        bentoml_home=args.bentoml_home,
        model_tag=args.model_tag,
        config=args.config,
        env={"BTC_SERVE_BENCHMARK_API": "true"},
        api_workers=args.api_workers,
    ) as server:
        run_load(server.address, "/predict", bodies, concurrency=8, duration_s=2, warmup_s=1)
        server.memory.reset()
        before = batch_sizes(server.metrics())
        print(HEADER)
        results: dict[tuple[str, int], list[LoadResult]] = {}
        for concurrency in args.concurrency:
            for _ in range(args.rounds):
                for api in ("predict_noop", "predict"):
                    result, cpu_ms = _measure(server, f"/{api}", bodies, concurrency, args)
                    results.setdefault((api, concurrency), []).append(result)
                    print(_row(api, concurrency, result, cpu_ms), flush=True)
        print("peak RSS under load (MiB):", server.memory.report())
        print("runner batches:", _batch_text(_moved_batches(server, before)))
    print(f"summary over {args.rounds} round(s) each ({_machine()}):")
    for concurrency in args.concurrency:
        noop = _pooled(results[("predict_noop", concurrency)])
        predict = _pooled(results[("predict", concurrency)])
        rps_ratio = predict.requests_per_s / noop.requests_per_s
        p99_ratio = predict.percentile_ms(99) / noop.percentile_ms(99)
        ok = rps_ratio >= CEILING_GOAL_RPS_RATIO and p99_ratio <= CEILING_GOAL_P99_RATIO
        print(
            f"  {concurrency} clients: predict/noop req/s {rps_ratio:.2f} "
            f"(goal >= {CEILING_GOAL_RPS_RATIO}), p99 {p99_ratio:.2f}x "
            f"(goal <= {CEILING_GOAL_P99_RATIO}); noop {noop.requests_per_s:.1f} req/s, "
            f"p99 {noop.percentile_ms(99):.0f} ms; predict {predict.requests_per_s:.1f} req/s, "
            f"p99 {predict.percentile_ms(99):.0f} ms; non-200: {noop.non_200 + predict.non_200}"
            f" -> {_verdict(ok)}"
        )


def bench_batching(args: argparse.Namespace, bodies: list[bytes], work_dir: Path) -> None:
    print(f"\n## adaptive batching: as shipped vs disabled ({_machine()})")
    with ExitStack() as stack:
        servers = {
            mode: stack.enter_context(
                serve(
                    "http",
                    work_dir=work_dir / f"batching-{mode}",
                    bentoml_home=args.bentoml_home,
                    model_tag=args.model_tag,
                    config=args.config,
                    config_overrides=overrides,
                    api_workers=args.api_workers,
                )
            )
            for mode, overrides in (("on", None), ("off", BATCHING_OFF))
        }
        for server in servers.values():
            run_load(server.address, "/predict", bodies, concurrency=8, duration_s=2, warmup_s=1)
            server.memory.reset()
        before = {mode: batch_sizes(server.metrics()) for mode, server in servers.items()}
        print(HEADER)
        results: dict[tuple[str, int], list[LoadResult]] = {}
        for concurrency in args.concurrency:
            for _ in range(args.rounds):
                for mode, server in servers.items():
                    result, cpu_ms = _measure(server, "/predict", bodies, concurrency, args)
                    results.setdefault((mode, concurrency), []).append(result)
                    print(_row(f"batching {mode}", concurrency, result, cpu_ms), flush=True)
        moved = {mode: _moved_batches(server, before[mode]) for mode, server in servers.items()}
        for mode, server in servers.items():
            print(f"batching {mode}: peak RSS under load (MiB): {server.memory.report()}")
            print(f"batching {mode}: runner batches: {_batch_text(moved[mode])}")
    print(f"summary over {args.rounds} round(s) each ({_machine()}):")
    batched = any(v.batches > v.batches_of_one for v in moved["on"].values())
    for concurrency in args.concurrency:
        on = _pooled(results[("on", concurrency)])
        off = _pooled(results[("off", concurrency)])
        ratio = on.requests_per_s / off.requests_per_s
        goal = f" (goal >= {BATCHING_GOAL_RPS_RATIO} at 64)" if concurrency == 64 else ""
        verdict = f" -> {_verdict(ratio >= BATCHING_GOAL_RPS_RATIO and batched)}" if goal else ""
        print(
            f"  {concurrency} clients: on/off req/s {ratio:.2f}{goal}; on {on.requests_per_s:.1f}"
            f" req/s p99 {on.percentile_ms(99):.0f} ms; off {off.requests_per_s:.1f} req/s p99 "
            f"{off.percentile_ms(99):.0f} ms; non-200: {on.non_200 + off.non_200}{verdict}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_service",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--only", choices=("ceiling", "batching"), default=None)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per figure")
    parser.add_argument("--duration-s", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument("--window-bars", type=int, default=256)
    parser.add_argument("--model-tag", default=None, help="default: production, else newest")
    parser.add_argument("--bentoml-home", type=Path, default=None, help="default: $BENTOML_HOME")
    parser.add_argument("--config", type=Path, default=CONFIGURATION)
    parser.add_argument("--api-workers", type=int, default=None, help="default: one per CPU")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.bentoml_home = args.bentoml_home or default_bentoml_home()
    print(time.strftime("%Y-%m-%d %H:%M:%S %Z"), _machine())
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"commit {git.stdout.strip()}, config {args.config}, api workers {args.api_workers}")
    workload = build_workload(window_bars=args.window_bars)
    bodies = [call.body for call in workload.calls["predict"]]
    kib = np.mean([len(b) for b in bodies]) / 1024
    print(f"{len(bodies)} real windows of {args.window_bars} candles, ~{kib:.0f} KiB each")
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        if args.only in (None, "ceiling"):
            bench_ceiling(args, bodies, Path(tmp))
        if args.only in (None, "batching"):
            bench_batching(args, bodies, Path(tmp))


if __name__ == "__main__":
    main()
