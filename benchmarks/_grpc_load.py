"""A closed-loop gRPC load generator (the gRPC twin of :mod:`benchmarks._load`).

``concurrency`` tasks on one asyncio channel each send a ``BentoService/Call`` and wait for its
answer, for a fixed time. Requests are serialised once (raw bytes through a generic unary
method), so the client spends its CPU on the transport, not on protobuf.
"""

from __future__ import annotations

import asyncio
import time

import grpc
from bentoml.grpc.v1 import service_pb2

from benchmarks._load import LoadResult, measured

CALL = "/bentoml.grpc.v1.BentoService/Call"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_CODE_AS_STATUS = {grpc.StatusCode.OK: 200, grpc.StatusCode.INVALID_ARGUMENT: 400}


def call_bytes(api: str, bodies: list[bytes]) -> list[bytes]:
    """Serialised ``Request(api_name=api, serialized_bytes=body)`` messages."""
    return [
        service_pb2.Request(api_name=api, serialized_bytes=b).SerializeToString() for b in bodies
    ]


async def _worker(call, requests, offset, measure_from, stop_at, result) -> None:  # type: ignore[no-untyped-def]
    i = offset
    while (started := time.perf_counter()) < stop_at:
        try:
            await call(requests[i % len(requests)], timeout=60)
            status = 200
        except grpc.aio.AioRpcError as exc:
            status = _CODE_AS_STATUS.get(exc.code(), 500)
        i += 1
        finished = time.perf_counter()
        result.answered += 1
        if started >= measure_from and finished <= stop_at:
            result.completed += 1
            result.statuses[status] += 1
            result.latencies_ms.append((finished - started) * 1000)


async def _run(address, requests, concurrency, warmup_s, duration_s) -> LoadResult:  # type: ignore[no-untyped-def]
    result = LoadResult()
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(CALL)  # bytes in, bytes out
        measure_from = time.perf_counter() + warmup_s
        stop_at = measure_from + duration_s
        clients = [
            _worker(call, requests, k * 7, measure_from, stop_at, result)
            for k in range(concurrency)
        ]
        await measured(clients, measure_from, duration_s, result)
    return result


def run_grpc_load(
    address: str,
    requests: list[bytes],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 3.0,
) -> LoadResult:
    """Send the serialised ``requests`` (in turn) from ``concurrency`` closed-loop callers for
    ``warmup_s + duration_s`` seconds; only the last ``duration_s`` are measured."""
    return asyncio.run(_run(address, requests, concurrency, warmup_s, duration_s))
