"""Start a real ``bentoml serve`` / ``bentoml serve-grpc`` on loopback and stop it for sure.

Used by the integration tests, the load tests and the benchmarks alike. A server runs in its
own process group (``start_new_session``) and is stopped with SIGTERM to the group, then
SIGKILL to whatever of the group is left (a runner worker that outlives its leader).

Two servers running at once need their own ``BENTOML_HOME`` (:func:`isolated_home`): BentoML
keeps a server's Prometheus files in its home and wipes them at start-up, so a second server
sharing the home would reset the first one's ``/metrics``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = REPO_ROOT / "configuration.yaml"
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 180.0


_LOCAL_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10_000


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux default 32768)."""
    try:
        return int(_LOCAL_PORT_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, below the kernel's ephemeral range if it can.

    The caller binds it later; a port from the ephemeral range (``bind(0)``) can meanwhile be
    taken by any outgoing connection on the machine (runner and database clients open many),
    one below it only by another listener.
    """
    low = _ephemeral_low()
    if low > _LOWEST_PORT + 100:
        for _ in range(50):
            port = random.randrange(_LOWEST_PORT, low)
            with socket.socket() as sock:
                try:
                    sock.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def server_env(
    bentoml_home: str | Path,
    model_tag: str | None = None,
    *,
    config: Path = CONFIGURATION,
    config_overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of a server process: this environment plus ``env``, the home, the model
    (``BTC_SERVE_MODEL_TAG``; None: the service's choice), the configuration and its overrides
    (``BENTOML_CONFIG_OVERRIDES``, nested keys)."""
    home = Path(bentoml_home)
    server = {
        **os.environ,
        **(env or {}),
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_CONFIG": str(config),
        "BENTOML_CONFIG_OVERRIDES": json.dumps(dict(config_overrides or {})),
        # BentoML 1.4.39 starts the gRPC metrics server without this variable (it then answers
        # 500); the value is the directory BentoML uses for every other process.
        "PROMETHEUS_MULTIPROC_DIR": str(home / "prometheus_multiproc_dir"),
    }
    if model_tag:
        server["BTC_SERVE_MODEL_TAG"] = model_tag
    return server


def isolated_home(base: Path, shared_home: str | Path) -> str:
    """A BENTOML_HOME at ``base`` sharing ``shared_home``'s model store (a ``models`` link), so
    that this server's metrics files are its own."""
    base.mkdir(parents=True, exist_ok=True)
    if not (base / "models").exists():
        models = (Path(shared_home) / "models").resolve()
        (base / "models").symlink_to(models, target_is_directory=True)
    return str(base)


@contextmanager
def running_server(
    args: list[str],
    env: dict[str, str],
    log_path: Path,
    is_ready: Callable[[], bool],
    *,
    start_timeout_s: float = START_TIMEOUT_S,
    python: str | Path = sys.executable,
    cwd: Path = REPO_ROOT,
) -> Iterator[subprocess.Popen]:
    """Start ``python -m bentoml <args>`` in its own process group (output to ``log_path``),
    wait until ``is_ready``, and always stop the whole group on exit. ``python`` and ``cwd``:
    another interpreter and checkout (the benchmarks serve an older commit that way).

    Raises:
        RuntimeError: the server exited before it was ready (with its log's tail).
        TimeoutError: not ready within ``start_timeout_s``.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(python), "-m", "bentoml", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + start_timeout_s
        while not is_ready():
            if process.poll() is not None:
                raise RuntimeError(f"server exited ({process.returncode}):\n{tail(log_path)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready in {start_timeout_s}s:\n{tail(log_path)}")
            time.sleep(0.5)
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever of the group is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:  # the whole group is gone
            break
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, n_chars: int = 4000) -> str:
    """The end of a server's log, for error messages."""
    return path.read_text(errors="replace")[-n_chars:]
