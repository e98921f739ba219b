"""What monitoring costs the hot path: the prediction log (``bentoml.monitor``) on vs off.

``server``: two ``bentoml serve`` processes of the same model, prediction log on (as shipped,
to a log folder in the work directory) and off (``monitoring.enabled: false``), the same
``predict`` load (real 256-candle windows) in alternating rounds; reports req/s and latency
percentiles of each and the on/off ratio. Both keep the live drift gauges.
``micro``: in one process, the CPU time per call of ``serving.monitor.log_predictions`` (one window
and a 64-window batch) and of ``LiveDrift.observe`` and one drift export (1,000 rows).

    BENTOML_HOME=/path/with/a/model .venv/bin/python -m benchmarks.bench_monitoring [--help]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from benchmarks._load import LoadResult

MONITORING_OFF = {"monitoring": {"enabled": False}}


def _machine() -> str:
    load = os.getloadavg()
    return f"nproc {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def _per_call_us(function, *, min_seconds: float = 1.0) -> float:
    """CPU time per call in microseconds (this thread's user + system time, so that waiting for
    a core on a shared machine does not count): the median of 7 samples of at least
    ``min_seconds / 7`` each."""
    samples = []
    for _ in range(7):
        calls, started = 0, time.thread_time()
        while (elapsed := time.thread_time() - started) < min_seconds / 7:
            function()
            calls += 1
        samples.append(elapsed / calls * 1e6)
    return float(np.median(samples))


def bench_micro(log_dir: Path) -> None:
    """Runs in a child process whose BentoML config points the monitor at ``log_dir``."""
    from features import FEATURE_NAMES
    from monitoring.drift_stats import reference_profile
    from serving.monitor import LiveDrift, log_predictions

    rng = np.random.default_rng(0)
    features = rng.normal(size=(64, len(FEATURE_NAMES)))
    answer = {
        "probability_up": 0.51,
        "signal": "long",
        "model_tag": "btcusdt_mlp:bench",
        "timestamp": "2022-06-14T23:00:00Z",
        "horizon_bars": 1,
    }
    one = _per_call_us(lambda: log_predictions(features[:1], [answer]))
    batch = _per_call_us(lambda: log_predictions(features, [answer] * 64))
    profile = reference_profile(rng.normal(size=(5000, len(FEATURE_NAMES))), FEATURE_NAMES)
    drift = LiveDrift(profile, model_tag="bench", window_rows=1000, every=10**9, min_rows=100)
    observe = _per_call_us(lambda: drift.observe(features[:1]))
    export = _per_call_us(lambda: drift.export(drift._rows), min_seconds=2.0)
    size = sum(p.stat().st_size for p in log_dir.rglob("data.*.log*"))
    lines = sum(1 for p in log_dir.rglob("data.*.log*") for _ in p.open())
    print("CPU time per call (thread time, median of 7 samples):")
    print(f"log_predictions, 1 window:    {one:8.1f} us per request")
    print(
        f"log_predictions, 64 windows:  {batch:8.1f} us per request ({batch / 64:.1f} per window)"
    )
    print(f"LiveDrift.observe, 1 row:     {observe:8.1f} us per request")
    print(f"drift export, 1000 x 24 rows: {export / 1000:8.2f} ms (background thread, every N)")
    print(f"log size: {size / lines:.0f} bytes per prediction ({lines} lines written)")


def _pooled(results: list[LoadResult]) -> LoadResult:
    """One result of several runs (sums; latencies concatenated)."""
    pooled = LoadResult()
    for result in results:
        pooled.completed += result.completed
        pooled.statuses.update(result.statuses)
        pooled.latencies_ms += result.latencies_ms
        pooled.duration_s += result.duration_s
        pooled.client_cpu_s += result.client_cpu_s
    return pooled


def bench_server(args: argparse.Namespace, work_dir: Path) -> None:
    from benchmarks._load import run_load
    from loadtests.server import cpu_seconds_by_role, serve
    from loadtests.workload import build_workload

    bodies = [c.body for c in build_workload(window_bars=args.window_bars).calls["predict"]]
    log_on = {"monitoring": {"options": {"log_path": str(work_dir / "prediction_logs")}}}
    print(f"\n## predict with the prediction log on vs off ({_machine()})")
    print(f"{len(bodies)} real windows of {args.window_bars} candles")
    with ExitStack() as stack:
        servers = {
            mode: stack.enter_context(
                serve(
                    "http",
                    work_dir=work_dir / f"log-{mode}",
                    bentoml_home=args.bentoml_home,
                    model_tag=args.model_tag,
                    config_overrides=overrides,
                    api_workers=args.api_workers,
                )
            )
            for mode, overrides in (("on", log_on), ("off", MONITORING_OFF))
        }
        for server in servers.values():  # warm both (batching, first log file)
            run_load(server.address, "/predict", bodies, concurrency=8, duration_s=2, warmup_s=1)
        results: dict[tuple[str, int], list[LoadResult]] = {}
        api_cpu_s: dict[tuple[str, int], float] = {}
        print(
            f"{'log':<6}{'conc':>5}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non200':>8}"
            f"{'API CPU ms/req':>16}"
        )
        for concurrency in args.concurrency:
            for _ in range(args.rounds):
                for mode, server in servers.items():
                    before = cpu_seconds_by_role(server.process.pid).get("api_server", 0.0)
                    result = run_load(
                        server.address,
                        "/predict",
                        bodies,
                        concurrency=concurrency,
                        duration_s=args.duration_s,
                        warmup_s=args.warmup_s,
                    )
                    cpu_s = cpu_seconds_by_role(server.process.pid)["api_server"] - before
                    answered = result.completed * (args.duration_s + args.warmup_s)
                    answered /= args.duration_s  # the warm-up's answers used CPU too
                    results.setdefault((mode, concurrency), []).append(result)
                    key = (mode, concurrency)
                    api_cpu_s[key] = api_cpu_s.get(key, 0.0) + cpu_s
                    print(
                        f"{mode:<6}{concurrency:>5}{result.requests_per_s:>10.1f}"
                        f"{result.percentile_ms(50):>10.1f}{result.percentile_ms(99):>10.1f}"
                        f"{result.non_200:>8}{1000 * cpu_s / answered:>16.2f}",
                        flush=True,
                    )
    logged = sum(1 for p in (work_dir / "prediction_logs").rglob("data.*.log*") for _ in p.open())
    print(f"summary over {args.rounds} alternating round(s) ({_machine()}); {logged} logged:")
    for concurrency in args.concurrency:
        on = _pooled(results[("on", concurrency)])
        off = _pooled(results[("off", concurrency)])
        factor = (args.duration_s + args.warmup_s) / args.duration_s
        cpu_on = 1000 * api_cpu_s[("on", concurrency)] / (on.completed * factor)
        cpu_off = 1000 * api_cpu_s[("off", concurrency)] / (off.completed * factor)
        print(
            f"  {concurrency} clients: API worker CPU per request on {cpu_on:.2f} ms, off "
            f"{cpu_off:.2f} ms (+{cpu_on - cpu_off:.2f} ms)"
        )
        print(
            f"  {concurrency} clients: on/off req/s {on.requests_per_s / off.requests_per_s:.3f}"
            f"; on {on.requests_per_s:.1f} req/s p50 {on.percentile_ms(50):.0f} ms p99 "
            f"{on.percentile_ms(99):.0f} ms; off {off.requests_per_s:.1f} req/s p50 "
            f"{off.percentile_ms(50):.0f} ms p99 {off.percentile_ms(99):.0f} ms; "
            f"non-200: {on.non_200 + off.non_200}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_monitoring",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--only", choices=("server", "micro"), default=None)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per figure")
    parser.add_argument("--duration-s", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--window-bars", type=int, default=256)
    parser.add_argument("--model-tag", default=None, help="default: production, else newest")
    parser.add_argument("--bentoml-home", type=Path, default=None, help="default: $BENTOML_HOME")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--micro-log-dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.micro_log_dir:  # the child process of the micro benchmark
        bench_micro(args.micro_log_dir)
        return
    from loadtests.server import default_bentoml_home

    args.bentoml_home = args.bentoml_home or default_bentoml_home()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(time.strftime("%Y-%m-%d %H:%M:%S %Z"), _machine(), f"commit {git.stdout.strip()}")
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        if args.only in (None, "micro"):
            print(f"\n## per-call cost, in process ({_machine()})", flush=True)
            log_dir = Path(tmp) / "micro-logs"
            options = {"monitoring": {"enabled": True, "options": {"log_path": str(log_dir)}}}
            env = {**os.environ, "BENTOML_CONFIG_OVERRIDES": json.dumps(options)}
            micro = [sys.executable, "-m", "benchmarks.bench_monitoring"]
            subprocess.run([*micro, "--micro-log-dir", str(log_dir)], env=env, check=True)
        if args.only in (None, "server"):
            bench_server(args, Path(tmp))


if __name__ == "__main__":
    main()
