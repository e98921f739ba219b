"""Real ``bentoml serve`` / ``bentoml serve-grpc`` processes on loopback, for integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = REPO_ROOT / "configuration.yaml"
START_TIMEOUT_S = 180.0

TEST_CONFIG_OVERRIDES = {
    # One worker per runner and one API worker: fewer processes on small CI machines. The
    # batching settings are the shipped configuration.yaml's.
    "runners": {"features": {"resources": {"cpu": 1}}, "direction": {"resources": {"cpu": 1}}},
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(bentoml_home: str, model_tag: str, overrides: dict | None = None) -> dict[str, str]:
    """Environment of a server process: the test store, the model, the shipped configuration."""
    merged = json.loads(json.dumps(TEST_CONFIG_OVERRIDES))
    # The prediction log (bentoml.monitor) goes to the server's home, not the working directory.
    merged["monitoring"] = {"options": {"log_path": str(Path(bentoml_home) / "prediction_logs")}}
    for key, value in (overrides or {}).items():
        merged[key] = {**merged.get(key, {}), **value}
    return {
        **os.environ,
        "BENTOML_HOME": bentoml_home,
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_CONFIG": str(CONFIGURATION),
        "BENTOML_CONFIG_OVERRIDES": json.dumps(merged),
        "BTC_SERVE_MODEL_TAG": model_tag,
        # BentoML 1.4.39 starts the gRPC metrics server without this variable (it then answers
        # 500); the value is the directory BentoML uses for every other process.
        "PROMETHEUS_MULTIPROC_DIR": str(Path(bentoml_home) / "prometheus_multiproc_dir"),
    }


def isolated_home(base: Path, shared_home: str) -> str:
    """A BENTOML_HOME sharing ``shared_home``'s model store. Two servers running at once need
    their own homes: BentoML keeps its metrics files in ``$BENTOML_HOME`` and wipes them at start.
    """
    base.mkdir(parents=True, exist_ok=True)
    (base / "models").symlink_to(Path(shared_home) / "models", target_is_directory=True)
    return str(base)


@contextmanager
def running_server(
    args: list[str], env: dict[str, str], log_path: Path, is_ready: Callable[[], bool]
) -> Iterator[subprocess.Popen]:
    """Start ``python -m bentoml <args>`` in its own process group, wait until ``is_ready``,
    and always kill the whole group on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not is_ready():
                if process.poll() is not None:
                    raise RuntimeError(f"server exited ({process.returncode}):\n{tail(log_path)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server not ready in {START_TIMEOUT_S}s:\n{tail(log_path)}")
                time.sleep(0.5)
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):  # SIGKILL also takes any straggling worker
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, n_chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-n_chars:]
