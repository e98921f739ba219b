"""The one server launcher: a stopped server leaves no process of its group behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from devtools import free_port, stop

STUBBORN_GROUP = """
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""
"""A leader that exits on SIGTERM and a worker that ignores it, in one process group."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_stop_terms_the_group_then_kills_what_ignores_it():
    process = subprocess.Popen(
        [sys.executable, "-c", STUBBORN_GROUP],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    worker = int(process.stdout.readline())
    time.sleep(0.3)  # the worker has installed its SIGTERM handler
    stop(process, grace_s=2.0)
    process.stdout.close()
    assert process.returncode == -15  # the leader went on SIGTERM
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)  # the worker ignoring SIGTERM was killed with the group


def test_free_port_is_bindable_on_loopback_and_outside_the_ephemeral_range():
    """Outgoing connections take ports from the kernel's ephemeral range; a port picked below
    it cannot be taken by one between picking and binding (a CI run once lost a port so)."""
    import socket
    from pathlib import Path

    ports = {free_port() for _ in range(20)}
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(10_000 <= port < low for port in ports), sorted(ports)
    assert len(ports) > 1  # random, not one fixed port
