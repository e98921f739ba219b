"""Service benchmarks, as ratios measured in one run (issues 6 and 12).

``versus`` (with ``--baseline-ref REF``): this checkout against a commit built in its own
worktree, venv and model, HTTP and gRPC, in alternating rounds (:mod:`benchmarks._versus`).

``ceiling``: one ``bentoml serve`` process of the benchmark service
(``benchmarks.noop_service:svc``) answers ``predict_noop`` (predict's JSON parsing and candle
validation, no features, no model) and ``predict`` (one 256-candle window) at each concurrency, in
alternating rounds; goal: predict >= 0.6x the no-op's req/s with p99 <= 2x the no-op's.
``batching``: two servers, runner adaptive batching as shipped vs disabled, the same ``predict``
load in alternating rounds at 1, 32 and 64 clients; batching must never hurt (on >= off in req/s,
a lone request's p50 <= 1.2x off's; the ratio is reported, the old 1.5x goal is retired), with
batch sizes > 1 read from BentoML's ``bentoml_runner_adaptive_batch_size`` histogram. Both
report the servers' peak RSS (every process of the tree) under load. Bodies are real windows
of the bundled candles.

Each comparison also gives a CPU-cost ratio (server CPU per answered request, every process of
the tree): on a machine shared with other work the scheduler shares time per process, so a
server with more busy processes (``predict``: API workers + runners) gets a larger share than
one with fewer (the no-op: API workers only), and req/s ratios lean that way; CPU per request
does not. Usage::

    BENTOML_HOME=/path/with/a/model .venv/bin/python -m benchmarks.bench_service [--help]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks._load import HEADER, LoadResult, _row, run_load
from benchmarks._versus import bench_versus
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


def _machine() -> str:
    load = os.getloadavg()
    return f"nproc {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


@dataclass
class Arm:
    """One side of a comparison: a server and the API path loaded on it; its runs so far."""

    server: Server
    path: str
    runs: dict[int, list[tuple[LoadResult, dict[str, float]]]] = field(default_factory=dict)

    def pooled(self, concurrency: int) -> tuple[LoadResult, float]:
        """All runs at ``concurrency`` as one result, and the server CPU ms per request."""
        pooled = LoadResult()
        cpu_ms = 0.0
        for result, cpu_by_role in self.runs[concurrency]:
            pooled.completed += result.completed
            pooled.statuses.update(result.statuses)
            pooled.latencies_ms += result.latencies_ms
            pooled.duration_s += result.duration_s
            pooled.client_cpu_s += result.client_cpu_s
            pooled.answered += result.answered
            cpu_ms += sum(cpu_by_role.values()) * result.answered
        return pooled, cpu_ms / max(pooled.answered, 1)


def _measure(
    arm: Arm, bodies: list[bytes], concurrency: int, args: argparse.Namespace
) -> tuple[LoadResult, dict[str, float]]:
    """One load run, and the server's CPU milliseconds per answered request, per process role
    (over the whole run: warm-up, measured window and the last answers)."""
    before = cpu_seconds_by_role(arm.server.process.pid)
    result = run_load(
        arm.server.address,
        arm.path,
        bodies,
        concurrency=concurrency,
        duration_s=args.duration_s,
        warmup_s=args.warmup_s,
    )
    after = cpu_seconds_by_role(arm.server.process.pid)
    answered = max(result.answered, 1)
    cpu_ms = {role: (after[role] - before.get(role, 0.0)) * 1000 / answered for role in after}
    return result, cpu_ms


def _alternate(
    arms: dict[str, Arm],
    bodies: list[bytes],
    args: argparse.Namespace,
    burst_s: float = 0.0,
    burst_clients: int = 32,
) -> None:
    """Load the arms in turn (a, b, a, b, ...) at each concurrency, ``args.rounds`` times, so
    that load from other work on the machine falls on both alike. With ``burst_s``, each
    one-client run follows ``burst_s`` seconds of ``burst_clients`` on the same server
    (unmeasured):
    what a lone client meets after a busy spell."""
    print(HEADER)
    for concurrency in args.concurrency:
        for _ in range(args.rounds):
            for label, arm in arms.items():
                if burst_s and concurrency == 1:
                    run_load(
                        arm.server.address,
                        arm.path,
                        bodies,
                        concurrency=burst_clients,
                        duration_s=burst_s,
                        warmup_s=0.0,
                    )
                result, cpu_ms = _measure(arm, bodies, concurrency, args)
                arm.runs.setdefault(concurrency, []).append((result, cpu_ms))
                print(_row(label, concurrency, result, cpu_ms), flush=True)


@dataclass(frozen=True)
class Ratios:
    """``test`` against ``base`` at one concurrency.

    Attributes:
        rps: median over rounds of test req/s / base req/s (each pair measured back to back).
        p99: test p99 / base p99, over all rounds' latencies.
        cpu: base CPU ms per request / test CPU ms per request, the whole server tree: the
            req/s ratio a server bound by its own CPU would show, whatever else runs.
    """

    rps: float
    p99: float
    cpu: float
    text: str


def _ratios(test: Arm, base: Arm, concurrency: int, names: tuple[str, str]) -> Ratios:
    """``names``: how ``test`` and ``base`` are called in the text."""
    per_round = [
        t.requests_per_s / b.requests_per_s
        for (t, _), (b, _) in zip(test.runs[concurrency], base.runs[concurrency], strict=True)
    ]
    test_all, test_cpu = test.pooled(concurrency)
    base_all, base_cpu = base.pooled(concurrency)
    rps = statistics.median(per_round)
    p99 = test_all.percentile_ms(99) / base_all.percentile_ms(99)
    test_name, base_name = names
    text = (
        f"req/s ratio {rps:.2f} (median of rounds: {', '.join(f'{r:.2f}' for r in per_round)}), "
        f"p99 ratio {p99:.2f}, CPU-cost ratio {base_cpu / test_cpu:.2f}; "
        f"{test_name}: {test_all.requests_per_s:.1f} req/s, p99 "
        f"{test_all.percentile_ms(99):.0f} ms, server CPU {test_cpu:.1f} ms/request; "
        f"{base_name}: {base_all.requests_per_s:.1f} req/s, p99 "
        f"{base_all.percentile_ms(99):.0f} ms, server CPU {base_cpu:.1f} ms/request; "
        f"non-200: {base_all.non_200 + test_all.non_200}"
    )
    return Ratios(rps, p99, base_cpu / test_cpu, text)


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


def _warm(server: Server, bodies: list[bytes]) -> dict[str, BatchSizes]:
    """A short unmeasured load (the runners' batching optimisers train on the first calls);
    the batch histogram after it, and memory peaks reset to measure under load only."""
    run_load(server.address, "/predict", bodies, concurrency=8, duration_s=2, warmup_s=1)
    server.memory.reset()
    return batch_sizes(server.metrics())


def bench_ceiling(args: argparse.Namespace, bodies: list[bytes], work_dir: Path) -> None:
    print(f"\n## ceiling: predict_noop vs predict, same server ({_machine()})")
    with serve(
        "http",
        work_dir=work_dir / "ceiling",
        bentoml_home=args.bentoml_home,
        model_tag=args.model_tag,
        config=args.config,
        config_overrides=args.config_overrides,
        service="benchmarks.noop_service:svc",
        api_workers=args.api_workers,
    ) as server:
        before = _warm(server, bodies)
        arms = {"predict_noop": Arm(server, "/predict_noop"), "predict": Arm(server, "/predict")}
        _alternate(arms, bodies, args)
        print("peak RSS under load (MiB):", server.memory.report())
        print("runner batches:", _batch_text(_moved_batches(server, before)))
    print(f"summary, predict against predict_noop ({_machine()}):")
    for concurrency in args.concurrency:
        ratios = _ratios(
            arms["predict"], arms["predict_noop"], concurrency, ("predict", "predict_noop")
        )
        ok = ratios.rps >= CEILING_GOAL_RPS_RATIO and ratios.p99 <= CEILING_GOAL_P99_RATIO
        print(
            f"  {concurrency} clients: {ratios.text} -> goal (req/s >= {CEILING_GOAL_RPS_RATIO}, "
            f"p99 <= {CEILING_GOAL_P99_RATIO}x) {_verdict(ok)}; by CPU cost "
            f"{_verdict(ratios.cpu >= CEILING_GOAL_RPS_RATIO)}"
        )


def bench_batching(args: argparse.Namespace, bodies: list[bytes], work_dir: Path) -> None:
    """Batching as shipped (sent when the runner is free, ``serving/batching.py``), batching
    with BentoML's own dispatcher (``BTC_SERVE_BATCH_DISPATCH=bentoml``) and batching off."""
    args = argparse.Namespace(**{**vars(args), "concurrency": args.batching_concurrency})
    print(f"\n## adaptive batching: as shipped, BentoML's dispatcher, disabled ({_machine()})")
    off = json.loads(json.dumps(args.config_overrides or {}))
    for runner in ("features", "direction"):
        off.setdefault("runners", {}).setdefault(runner, {})["batching"] = {"enabled": False}
    modes = {
        "on": (args.config_overrides, None),
        "bentoml": (args.config_overrides, {"BTC_SERVE_BATCH_DISPATCH": "bentoml"}),
        "off": (off, None),
    }
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
                    env=env,
                    api_workers=args.api_workers,
                )
            )
            for mode, (overrides, env) in modes.items()
        }
        before = {mode: _warm(server, bodies) for mode, server in servers.items()}
        labels = {"on": "batching on", "bentoml": "on, bentoml", "off": "batching off"}
        arms = {labels[mode]: Arm(server, "/predict") for mode, server in servers.items()}
        _alternate(arms, bodies, args, burst_s=args.burst_s, burst_clients=args.burst_clients)
        moved = {mode: _moved_batches(server, before[mode]) for mode, server in servers.items()}
        for mode, server in servers.items():
            print(f"{labels[mode]}: peak RSS under load (MiB): {server.memory.report()}")
            print(f"{labels[mode]}: runner batches: {_batch_text(moved[mode])}")
    print(f"summary, batching against off ({_machine()}; 1 client: right after a burst):")
    batched = any(v.batches > v.batches_of_one for v in moved["on"].values())
    print(f"  batches > 1 recorded: {batched}")
    for name in ("batching on", "on, bentoml"):
        for concurrency in args.concurrency:
            ratios = _ratios(arms[name], arms["batching off"], concurrency, (name, "off"))
            # Batching must never hurt: on >= off in req/s, a lone request's p50 <= 1.2x off's.
            on, _ = arms[name].pooled(concurrency)
            off_result, _ = arms["batching off"].pooled(concurrency)
            p50 = on.percentile_ms(50) / off_result.percentile_ms(50)
            verdict = f" -> on >= off {_verdict(ratios.rps >= 1.0)}"
            if concurrency == 1:
                verdict += f"; lone request p50 ratio {p50:.2f} <= 1.2 {_verdict(p50 <= 1.2)}"
            print(f"  {name}, {concurrency} clients: {ratios.text}{verdict}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_service",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--only", choices=("ceiling", "batching", "versus"), default=None)
    parser.add_argument(
        "--baseline-ref",
        default="ec0ad75",
        help="the commit to compare this checkout with (built in its own worktree, venv and "
        "model under .work/bench-baseline/; the first run takes ~5 min); '' skips it. "
        "ec0ad75: the service before the serving-speed work",
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[32, 64], help="ceiling and batching"
    )
    parser.add_argument("--batching-concurrency", type=int, nargs="+", default=[1, 32, 64])
    parser.add_argument(
        "--burst-s",
        type=float,
        default=8.0,
        help="batching: seconds of --burst-clients (unmeasured) before each 1-client run; 0: none",
    )
    parser.add_argument("--burst-clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per figure")
    parser.add_argument("--duration-s", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--window-bars", type=int, default=256)
    parser.add_argument("--model-tag", default=None, help="default: production, else newest")
    parser.add_argument("--bentoml-home", type=Path, default=None, help="default: $BENTOML_HOME")
    parser.add_argument("--config", type=Path, default=CONFIGURATION)
    parser.add_argument("--api-workers", type=int, default=None, help="default: one per CPU")
    parser.add_argument(
        "--config-overrides",
        type=json.loads,
        default=None,
        help="BENTOML_CONFIG_OVERRIDES (JSON) for every server, e.g. "
        '\'{"runners": {"features": {"resources": {"cpu": 1}}}}\'',
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.bentoml_home = args.bentoml_home or default_bentoml_home()
    print(time.strftime("%Y-%m-%d %H:%M:%S %Z"), _machine())
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(
        f"commit {git.stdout.strip()}, config {args.config}, overrides {args.config_overrides}, "
        f"api workers {args.api_workers or 'default'}"
    )
    workload = build_workload(window_bars=args.window_bars)
    bodies = [call.body for call in workload.calls["predict"]]
    kib = np.mean([len(b) for b in bodies]) / 1024
    print(f"{len(bodies)} real windows of {args.window_bars} candles, ~{kib:.0f} KiB each")
    args.python = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        if args.baseline_ref and args.only in (None, "versus"):
            bench_versus(args, workload, Path(tmp))
        if args.only in (None, "ceiling"):
            bench_ceiling(args, bodies, Path(tmp))
        if args.only in (None, "batching"):
            bench_batching(args, bodies, Path(tmp))


if __name__ == "__main__":
    main()
