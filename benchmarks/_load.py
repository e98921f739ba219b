"""A lean closed-loop HTTP/1.1 load generator for the service benchmarks.

``concurrency`` keep-alive connections each send a request, wait for the whole answer, and send
the next, for a fixed time. It is plain asyncio over sockets with pre-encoded requests, so the
client costs little CPU next to the server on a small machine (its own CPU time is reported, to
show it). Latencies are exact (no histogram rounding).
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


@dataclass
class LoadResult:
    """What a load run measured after its warm-up.

    Attributes:
        completed: answers received in the measured window.
        answered: every answer received, warm-up and the final in-flight ones included.
        statuses: count per HTTP status.
        latencies_ms: one per completed answer.
        duration_s: length of the measured window.
        client_cpu_s: CPU time this process spent in the measured window.
    """

    completed: int = 0
    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def requests_per_s(self) -> float:
        return self.completed / self.duration_s if self.duration_s else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def non_200(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


HEADER = (
    f"{'arm':<16}{'conc':>5}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
    f"{'non200':>8}{'client cpu':>11}  server CPU ms per request, by process"
)


def _row(label: str, concurrency: int, result: LoadResult, cpu_ms: dict[str, float]) -> str:
    per_role = " ".join(f"{role} {ms:.1f}" for role, ms in sorted(cpu_ms.items()) if ms >= 0.05)
    return (
        f"{label:<16}{concurrency:>5}{result.requests_per_s:>10.1f}"
        f"{result.percentile_ms(50):>10.1f}{result.percentile_ms(95):>10.1f}"
        f"{result.percentile_ms(99):>10.1f}{result.non_200:>8}"
        f"{100 * result.client_cpu_s / result.duration_s:>10.0f}%  {per_role}"
    )


def _request(host: str, path: str, body: bytes | None) -> bytes:
    """A POST of ``body``, or a GET where ``body`` is None."""
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    measure_from: float,
    stop_at: float,
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while (started := time.perf_counter()) < stop_at:
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            finished = time.perf_counter()
            result.answered += 1
            if started >= measure_from and finished <= stop_at:
                result.completed += 1
                result.statuses[status] += 1
                result.latencies_ms.append((finished - started) * 1000)
    finally:
        writer.close()


async def _run(
    url: str,
    path: str,
    bodies: list[bytes] | list[None],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [_request(f"{host}:{port}", path, body) for body in bodies]
    result = LoadResult()
    measure_from = time.perf_counter() + warmup_s
    stop_at = measure_from + duration_s
    tasks = [
        _connection(host, port, requests, k * 7, measure_from, stop_at, result)
        for k in range(concurrency)
    ]
    await measured(tasks, measure_from, duration_s, result)
    return result


async def measured(
    clients: list, measure_from: float, duration_s: float, result: LoadResult
) -> None:
    """Run the closed-loop ``clients`` (coroutines) to their end; the measured window's length
    and this process's CPU time in it go into ``result``."""
    runner = asyncio.gather(*clients)
    while time.perf_counter() < measure_from and not runner.done():
        await asyncio.sleep(0.05)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    await runner
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    result.duration_s = duration_s
    result.client_cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime) - (
        cpu_before.ru_utime + cpu_before.ru_stime
    )


def run_load(
    url: str,
    path: str,
    bodies: list[bytes] | list[None],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 3.0,
) -> LoadResult:
    """POST ``bodies`` (in turn; ``[None]``: GET) to ``url + path`` from ``concurrency``
    closed-loop clients for ``warmup_s + duration_s`` seconds; only the last ``duration_s`` are
    measured."""
    return asyncio.run(_run(url, path, bodies, concurrency, warmup_s, duration_s))
