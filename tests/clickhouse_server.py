"""A real ClickHouse server on loopback for the tests: its own config, data folder and free ports.

Debian's ``clickhouse-server`` (18.16, the oldest version this project supports; ``.ci/run``
installs it). Without it the tests that need it skip with the reason, except in CI
(``CI=true``), where they fail instead: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from devtools import free_port

APT_PACKAGES = "clickhouse-server clickhouse-client"
START_TIMEOUT_S = 60.0

_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>{root}/server.log</log>
    <errorlog>{root}/server.err.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>{root}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>Europe/Berlin</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <mlock_executable>false</mlock_executable>
</yandex>
"""
"""A server time zone other than UTC on purpose: nothing may depend on it."""

_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default></default></quotas>
</yandex>
"""


def server_binary() -> list[str] | None:
    """The command that runs a ClickHouse server, or None if none is installed."""
    if found := shutil.which("clickhouse-server"):
        return [found]
    if found := shutil.which("clickhouse"):
        return [found, "server"]
    return None


def require_clickhouse() -> list[str]:
    """The server command; skips the test without one (fails instead in CI)."""
    command = server_binary()
    if command is None:
        reason = f"no clickhouse-server: apt-get install -y {APT_PACKAGES} (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return command


BIND_ATTEMPTS = 4
_BIND_FAILURES = ("Address already in use", "Could not bind")


class PortTaken(RuntimeError):
    """clickhouse-server exited because one of its ports was taken."""


class ClickHouseServer:
    """One server process; :meth:`stop` and :meth:`start` again keep its data and ports."""

    def __init__(self, root: Path, command: list[str]):
        self.root = Path(root)
        self.command = command
        self.process: subprocess.Popen | None = None
        self.started = False
        self.root.mkdir(parents=True, exist_ok=True)
        self._pick_ports()
        (self.root / "users.xml").write_text(_USERS)

    def _pick_ports(self) -> None:
        self.tcp_port, self.http_port = free_port(), free_port()
        values = {"root": self.root, "tcp_port": self.tcp_port, "http_port": self.http_port}
        (self.root / "config.xml").write_text(_CONFIG.format(**values))

    def url(self, database: str) -> str:
        return f"clickhouse://127.0.0.1:{self.tcp_port}/{database}"

    def client(self, **options):  # type: ignore[no-untyped-def]
        from clickhouse_driver import Client

        return Client(host="127.0.0.1", port=self.tcp_port, connect_timeout=2, **options)

    def start(self) -> None:
        """Start the server and wait until it answers. A free port can be taken by another
        process between :func:`devtools.free_port` and the server's bind: the first start then
        picks other ports, a restart (which must keep its ports) tries the same ones again."""
        for attempt in range(BIND_ATTEMPTS):
            try:
                self._start_once()
                self.started = True
                return
            except PortTaken:
                if attempt == BIND_ATTEMPTS - 1:
                    raise
                if self.started:
                    time.sleep(1.0)
                else:
                    self._pick_ports()

    def _start_once(self) -> None:
        log_path = self.root / "stdout.log"
        log_start = log_path.stat().st_size if log_path.exists() else 0
        err_path = self.root / "server.err.log"
        err_start = err_path.stat().st_size if err_path.exists() else 0
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.command, f"--config-file={self.root / 'config.xml'}"],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if self.process.poll() is not None:
                    raise RuntimeError("clickhouse-server exited")
                client = self.client(send_receive_timeout=5)  # a stranger on the port: no hang
                client.execute("SELECT 1")
                client.disconnect()
                return
            except Exception as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log_text = log_path.read_bytes()[log_start:].decode(errors="replace")
                    err_text = (
                        err_path.read_bytes()[err_start:].decode(errors="replace")
                        if err_path.exists()
                        else ""
                    )
                    log_tail, err_tail = log_text[-2000:], err_text[-2000:]
                    exited = self.process.poll() is not None
                    self.stop()
                    if exited and any(f in log_text + err_text for f in _BIND_FAILURES):
                        raise PortTaken(f"clickhouse-server could not bind:\n{err_tail}") from exc
                    raise RuntimeError(
                        f"clickhouse-server did not start:\n{log_tail}\n{err_tail}"
                    ) from exc
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; returns once the process is gone."""
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process = None
