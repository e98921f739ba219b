"""A real ``bentoml serve`` / ``serve-grpc`` for a load test or a benchmark (started by
:mod:`devtools`, the one launcher), its memory and its batching metrics.

Each server gets its own ``BENTOML_HOME`` (:func:`devtools.isolated_home`: a ``models`` link to
the given store), so its ``/metrics`` are its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from client import GrpcClient
from devtools import (
    CONFIGURATION,
    LOOPBACK,
    REPO_ROOT,
    free_port,
    isolated_home,
    running_server,
    server_env,
)

Protocol = Literal["http", "grpc"]


def default_bentoml_home() -> Path:
    """``$BENTOML_HOME``, else BentoML's default ``~/bentoml``."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


@dataclass
class Server:
    """A running server.

    Attributes:
        protocol: ``http`` or ``grpc``.
        address: ``http://127.0.0.1:<port>`` (HTTP) or ``127.0.0.1:<port>`` (gRPC).
        metrics_url: its Prometheus endpoint.
        process: the ``bentoml`` process (the leader of the server's process group).
        log_path: where its output goes.
    """

    protocol: Protocol
    address: str
    metrics_url: str
    process: subprocess.Popen
    log_path: Path
    memory: RssWatcher = field(init=False)

    def __post_init__(self) -> None:
        self.memory = RssWatcher(self.process.pid)

    def is_ready(self) -> bool:
        return _readiness(self.protocol, self.address)()

    def metrics(self) -> str:
        """The Prometheus text of ``metrics_url``."""
        response = httpx.get(self.metrics_url, timeout=10.0)
        response.raise_for_status()
        return response.text


@contextmanager
def serve(
    protocol: Protocol,
    *,
    work_dir: Path,
    bentoml_home: Path | None = None,
    model_tag: str | None = None,
    config: Path = CONFIGURATION,
    config_overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    api_workers: int | None = None,
    service: str = "service:svc",
    start_timeout_s: float = 240.0,
    source_dir: Path = REPO_ROOT,
    python: str | Path = sys.executable,
) -> Iterator[Server]:
    """Run ``bentoml serve`` (``http``) or ``bentoml serve-grpc`` (``grpc``) of ``service``
    on a free loopback port until the block ends, then stop its whole process group.

    Args:
        protocol: which server.
        work_dir: holds the server's own ``BENTOML_HOME`` and its log.
        bentoml_home: the home whose model store is served (default :func:`default_bentoml_home`).
        model_tag: ``BTC_SERVE_MODEL_TAG`` (default: the service's choice: production, else the
            newest).
        config: the BentoML configuration (``BENTOML_CONFIG``).
        config_overrides: ``BENTOML_CONFIG_OVERRIDES`` (nested keys, e.g. runner batching).
        env: more environment variables for the server (e.g. ``BTC_SERVE_MAX_WINDOWS``).
        api_workers: ``--api-workers`` (default: BentoML's, one per CPU).
        service: what to serve (``benchmarks.noop_service:svc`` adds the benchmark baseline).
        start_timeout_s: how long to wait for readiness before giving up.
        source_dir: the checkout whose ``service:svc`` is served (benchmarks serve an older
            commit from its own worktree).
        python: the interpreter (and so the virtual environment) that runs it.

    Raises:
        FileNotFoundError: the store has no models.
        RuntimeError: the server exited before it was ready (with its log's tail).
        TimeoutError: it was not ready in time.
    """
    store = (bentoml_home or default_bentoml_home()) / "models"
    if not store.is_dir():
        raise FileNotFoundError(
            f"no model store at {store}: train a model first (python -m training.train) "
            "or set BENTOML_HOME"
        )
    home = isolated_home(work_dir / f"{protocol}-home", store.parent)
    port, metrics_port = free_port(), free_port()
    overrides: dict[str, Any] = json.loads(json.dumps(config_overrides or {}))
    if protocol == "grpc":
        overrides.setdefault("api_server", {}).setdefault("grpc", {}).setdefault("metrics", {})
        overrides["api_server"]["grpc"]["metrics"]["port"] = metrics_port
    environment = server_env(home, model_tag, config=config, config_overrides=overrides, env=env)
    command = "serve-grpc" if protocol == "grpc" else "serve"
    args = [command, service, "--host", LOOPBACK, "--port", str(port)]
    if api_workers:
        args += ["--api-workers", str(api_workers)]
    if protocol == "grpc":
        address, metrics_url = f"{LOOPBACK}:{port}", f"http://{LOOPBACK}:{metrics_port}/"
    else:
        address = f"http://{LOOPBACK}:{port}"
        metrics_url = f"{address}/metrics"
    log_path = work_dir / f"{protocol}-server.log"
    ready = _readiness(protocol, address)
    with running_server(
        args,
        environment,
        log_path,
        ready,
        start_timeout_s=start_timeout_s,
        python=python,
        cwd=source_dir,
    ) as process:
        server = Server(protocol, address, metrics_url, process, log_path)
        with server.memory:
            yield server


def _readiness(protocol: Protocol, address: str) -> Callable[[], bool]:
    def is_ready() -> bool:
        if protocol == "grpc":
            with GrpcClient(address) as probe:
                return probe.is_ready()
        try:
            return httpx.get(f"{address}/readyz", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    return is_ready


def process_role(process: psutil.Process) -> str:
    """``api_server``, ``runner:<name>`` or ``supervisor`` (the ``bentoml`` process itself)."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return "gone"
    if "--runner-name" in command:
        return f"runner:{command[command.index('--runner-name') + 1]}"
    if any("api_server" in part for part in command):
        return "api_server"
    return "supervisor"


def cpu_seconds_by_role(root_pid: int) -> dict[str, float]:
    """CPU time (user + system) used so far by a process tree, summed per :func:`process_role`."""
    totals: dict[str, float] = {}
    try:
        root = psutil.Process(root_pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return totals
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        role = process_role(process)
        totals[role] = totals.get(role, 0.0) + times.user + times.system
    return totals


class RssWatcher:
    """Samples the resident memory of a process and all its descendants in a thread.

    Attributes:
        peak_total_bytes: highest sum of RSS over the process tree at one sample.
        peak_by_role: highest RSS of any one process, per :func:`process_role`.
    """

    def __init__(self, root_pid: int, interval_s: float = 0.25):
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.peak_total_bytes = 0
        self.peak_by_role: dict[str, int] = {}
        self.processes_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        """Sample now; the tree's total RSS."""
        try:
            root = psutil.Process(self.root_pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for process in tree:
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            role = process_role(process)
            self.peak_by_role[role] = max(self.peak_by_role.get(role, 0), rss)
        self.processes_seen = max(self.processes_seen, len(tree))
        self.peak_total_bytes = max(self.peak_total_bytes, total)
        return total

    def reset(self) -> None:
        """Forget the peaks so far (e.g. after start-up, to measure under load only)."""
        self.peak_total_bytes = 0
        self.peak_by_role = {}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> RssWatcher:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, float]:
        """Peaks in MiB: ``total`` and one entry per process role."""
        mib = 1024 * 1024
        return {
            "total": round(self.peak_total_bytes / mib, 1),
            **{role: round(rss / mib, 1) for role, rss in sorted(self.peak_by_role.items())},
        }


@dataclass(frozen=True)
class BatchSizes:
    """BentoML's ``bentoml_runner_adaptive_batch_size`` histogram of one runner method.

    Attributes:
        batches: runner calls.
        items: requests (windows, rows) carried by them.
        batches_of_one: calls that carried a single item.
    """

    batches: float
    items: float
    batches_of_one: float

    @property
    def mean(self) -> float:
        return self.items / self.batches if self.batches else 0.0

    def __sub__(self, earlier: BatchSizes) -> BatchSizes:
        return BatchSizes(
            self.batches - earlier.batches,
            self.items - earlier.items,
            self.batches_of_one - earlier.batches_of_one,
        )


def batch_sizes(metrics_text: str) -> dict[str, BatchSizes]:
    """Per ``<runner>.<method>``, the adaptive batch size histogram summed over workers."""
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "bentoml_runner_adaptive_batch_size":
            continue
        for sample in family.samples:
            key = f"{sample.labels.get('runner_name')}.{sample.labels.get('method_name')}"
            entry = totals.setdefault(key, [0.0, 0.0, 0.0])
            if sample.name.endswith("_count"):
                entry[0] += sample.value
            elif sample.name.endswith("_sum"):
                entry[1] += sample.value
            elif sample.name.endswith("_bucket") and sample.labels.get("le") == "1.0":
                entry[2] += sample.value
    return {key: BatchSizes(*values) for key, values in totals.items()}
